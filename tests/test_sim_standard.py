"""Standard attention's kernel graph: Theta(Nd + N^2) HBM accesses, fusion, the 3-kernel preset."""

import pytest

from simulators import AttentionConfig, simulate_attention
from simulators.standard import attention_graph, fuse, kernels_in_pass

A100 = "a100-sxm4-40gb"


def _run(impl, **kw):
    base = dict(batch=2, heads=4, seq_len=512, head_dim=64, dtype="fp16")
    return simulate_attention(A100, impl, **{**base, **kw})


def test_standard_global_bytes_are_theta_nd_plus_n2():
    """Dao et al. 2022, Theorem 2: Theta(Nd + N^2). Unfused forward: Q, K, V, O once (4Nd) and
    S written, S read / S_scaled written, S_scaled read / P written, P read (6 N^2)."""
    for n in (256, 512, 1024):
        r = _run("standard", seq_len=n)
        assert r.global_bytes == 2 * 4 * (4 * n * 64 + 6 * n * n) * 2
        assert r.hbm_bytes == r.global_bytes
    assert 2 < _run("standard", seq_len=2048).global_bytes / _run("standard", seq_len=1024).global_bytes < 4


def test_standard_3kernel_preset_matches_kernels_standard():
    """kernels/standard.py: S and P in fp32, 4 N^2 bytes written and read for each, per (batch, head)."""
    n = 512
    r = _run("standard-3kernel", seq_len=n, causal=True, tensor_cores=False)
    assert [k.name for k in r.kernels] == ["qk_scale_mask", "softmax", "pv_matmul"]
    assert r.global_bytes == 2 * 4 * (16 * n * n + 4 * n * 64 * 2)
    assert r.matmul_flops == 2 * 4 * 4 * n * n * 64  # nothing skipped for the mask
    assert {k.bound for k in r.kernels} <= {"hbm", "fp32", "l2"}


@pytest.mark.parametrize("pass_,removed", [("fwd", 5), ("fwd+bwd", 7)])
def test_fusion_removes_exactly_the_intermediate_tensors(pass_, removed):
    """Fusing scale-mask-softmax-dropout keeps S_scaled, S_masked (written and read once each) and the
    dropout's read of P on chip; fusing dropout and softmax backward keeps dP on chip. P, P_drop and
    the mask are still written: the backward pass reads them."""
    kw = dict(causal=True, dropout=0.1, pass_=pass_)
    unfused, fused = _run("standard", **kw), _run("standard-fused", **kw)
    scores = 2 * 4 * 512 * 512 * 2
    assert unfused.global_bytes - fused.global_bytes == removed * scores
    assert unfused.flops == fused.flops


def test_fusion_refuses_a_cycle():
    g = attention_graph(AttentionConfig(batch=1, heads=1, kv_heads=1, seq_len=8, kv_len=8, head_dim=4), 2)
    with pytest.raises(ValueError, match="cycle"):
        fuse(g, ["qk_matmul", "pv_matmul"], "bad")
    assert kernels_in_pass(g, "fwd")[0] == "qk_matmul"


def test_standard_flops_count_six_products_forward_and_backward():
    r = _run("standard", pass_="fwd+bwd")
    assert r.matmul_flops == 6 * 2 * 2 * 4 * 512 * 512 * 64


def test_gqa_reduces_standard_kv_bytes_by_the_group_factor():
    full, grouped = _run("standard", heads=8), _run("standard", heads=8, kv_heads=2)
    kv = 2 * 2 * 8 * 512 * 64 * 2  # K and V: batch 2, 8 heads, fp16
    assert full.global_bytes - grouped.global_bytes == kv - kv // 4


def test_standard_attention_gpt2_medium_fa_paper_figure2():
    """FlashAttention paper Figure 2 (seed 003): standard attention, GPT-2 medium fwd + bwd,
    40.3 GB of HBM reads and writes. Our unfused graph (1-byte dropout mask) moves 44.6 GB."""
    r = simulate_attention(A100, "standard", batch=64, heads=16, seq_len=1024, head_dim=64, dtype="fp16",
                           causal=True, dropout=0.1, pass_="fwd+bwd")
    assert 0.9 < r.hbm_bytes / 40.3e9 < 1.15


def test_paper_kernel_list_moves_the_papers_bytes():
    """Fig. 2 (seed 003): 40.3 GB for standard attention. The kernel list of the paper's Fig. 1 bars (no scale
    pass over S) must count that within 1 %; a separate scale pass reads and writes S once more."""
    from costmodel.validation.implementations import figure2_ratio

    r = figure2_ratio.ratios()
    b = r["standard_hbm_bytes"]
    assert abs(b["paper_list"] / 40.3e9 - 1) < 0.01
    scores_bytes = 64 * 16 * 1024 * 1024 * 2
    assert b["with_scale_pass"] - b["paper_list"] == 2 * scores_bytes
