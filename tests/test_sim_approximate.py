"""simulators/{linformer,performer,reformer}.py: FLOPs against hand counts, scaling in N, bytes, errors.

Hand counts are per head, from each paper's formula (not from the simulator's tables):
Linformer 4 N k d for softmax(Q (EK)^T) (FV) plus 4 k N d for the projections (Wang et al. 2020,
Eq. 7); FAVOR+ bidirectional 4 N m d for the two feature projections plus 4 N m d + 2 N m for
Q' ((K')^T V) and Q' ((K')^T 1) (Choromanski et al. 2021, §2.2); Reformer 2 N d r n_b to hash
and 8 N m d per round for the chunked products (Kitaev et al. 2020, §2), and N log2 N compares
per row for the sort.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators import simulate_attention

GPU = "h200-sxm-141gb"


def sim(impl, n=4096, d=64, batch=1, heads=1, **kw):
    return simulate_attention(GPU, impl, batch=batch, heads=heads, seq_len=n, head_dim=d, dtype="bf16", **kw)


def test_linformer_matmul_flops_are_4nkd_plus_the_projections():
    n, k, d, bh = 4096, 256, 64, 3
    r = sim("linformer", n, d, batch=1, heads=bh, proj_len=k)
    assert r.matmul_flops == 4 * n * k * d * bh + 4 * k * n * d * bh
    attn = sum(r.kernel(x).matmul_flops for x in ("qk", "pv"))
    assert attn == 4 * n * k * d * bh


def test_performer_matmul_flops_hand_count():
    n, m, d = 2048, 128, 64
    r = sim("performer", n, d, features=m)
    assert r.matmul_flops == 2 * (2 * n * m * d) + 4 * n * m * d + 2 * n * m


def test_performer_causal_matmul_flops_hand_count():
    n, m, d, c = 2048, 128, 64, 128
    r = sim("performer", n, d, features=m, causal=True, chunk=c)
    intra = 2 * n * c * m + 2 * n * c * d  # C x C products inside the chunks
    inter = 2 * n * m * d + 2 * n * m * d + 2 * n * m  # chunk states, Q' S, Q' z
    assert r.matmul_flops == 2 * (2 * n * m * d) + intra + inter


def test_reformer_matmul_flops_hand_count():
    n, d, rounds, b = 4096, 64, 2, 64
    nb = n // b
    r = sim("reformer", n, d, hash_rounds=rounds, bucket_size=b)
    hashing = 2 * n * d * rounds * nb  # X [R, -R]
    chunked = rounds * (n // b) * (2 * b * (2 * b) * d + 2 * b * d * (2 * b))  # (b x 2b) scores and P V a chunk
    assert r.matmul_flops == hashing + chunked
    assert chunked == rounds * 8 * n * b * d


@pytest.mark.parametrize("impl,kw", [("linformer", {}), ("performer", {}), ("performer", {"causal": True})])
def test_linear_in_n(impl, kw):
    ns = np.array([2048, 4096, 8192, 16384, 32768])
    flops = np.array([sim(impl, int(n), **kw).flops for n in ns])
    hbm = np.array([sim(impl, int(n), **kw).hbm_bytes for n in ns])
    for y in (flops, hbm):
        ratio = y[1:] / y[:-1]
        # doubling N doubles the work, to within the N-independent parameter terms (E, F, W)
        assert np.all(np.abs(ratio - 2) < 0.02), ratio


def test_reformer_sort_is_n_log_n_and_hashing_quadratic():
    ns = [2048, 4096, 8192, 16384]
    rounds = 2
    sorts = [sim("reformer", n, hash_rounds=rounds).kernel("sort").other_flops for n in ns]
    for n, s in zip(ns, sorts):
        assert s == pytest.approx(rounds * n * math.log2(n))
    hashing = [sim("reformer", n, hash_rounds=rounds).kernel("hash").matmul_flops for n in ns]
    assert [b / a for a, b in zip(hashing, hashing[1:])] == pytest.approx([4.0] * 3)  # n_b = N / m grows with N
    chunked = [sim("reformer", n, hash_rounds=rounds).kernel("qk").matmul_flops for n in ns]
    assert [b / a for a, b in zip(chunked, chunked[1:])] == pytest.approx([2.0] * 3)


def test_bytes_are_tensor_level_for_a_hand_counted_kernel():
    n, k, d = 4096, 256, 64
    r = sim("linformer", n, d, batch=2, heads=4, proj_len=k)
    e = 2  # bf16
    qk = r.kernel("qk")  # reads Q (8 heads x N x d) and K' (8 x k x d), writes S (8 x N x k)
    assert qk.hbm_read_bytes == 8 * (n * d + k * d) * e and qk.hbm_write_bytes == 8 * n * k * e


def test_sort_bytes_follow_the_pytorch_path():
    from simulators.reformer import sort_traffic

    assert sort_traffic(512, 4096) == (2 * 4 + 8 + 2 * 12, 3)  # shared-memory sort
    per, kernels = sort_traffic(256, 8192)  # segmented radix sort, 6-bit digits: 6 passes
    assert (per, kernels) == (8 + 6 * 24, 7)
    assert sort_traffic(64, 65536)[0] > sort_traffic(512, 4096)[0]


def test_memory_footprint_holds_the_inputs_and_the_largest_live_set():
    r = sim("performer", 8192, 64, heads=8)
    mem = r.extra["memory"]
    qkv = 3 * 8 * 8192 * 64 * 2
    assert mem["inputs_bytes"] >= qkv and mem["peak_bytes"] >= qkv + 8 * 8192 * 256 * 2  # a feature map live
    assert mem["peak_bytes"] < sum(k.global_write_bytes for k in r.kernels) + mem["inputs_bytes"]


def test_eager_time_is_at_least_the_gpu_time_and_the_host_time():
    r = sim("reformer", 1024, 64, batch=16, heads=32)
    host = r.extra["host_per_kernel_s"]
    assert r.time_s >= r.gpu_time_s and r.time_s >= host * len(r.kernels)


@pytest.mark.parametrize("impl,kw,field", [
    ("linformer", {"causal": True}, "causal"),
    ("linformer", {"proj_len": 0}, "proj_len"),
    ("performer", {"features": 0}, "features"),
    ("performer", {"causal": True, "chunk": 100}, "seq_len"),
    ("reformer", {"bucket_size": 3000}, "bucket_size"),
    ("reformer", {"hash_rounds": 0}, "hash_rounds"),
    ("reformer", {"proj_len": 8}, "proj_len"),
    ("performer", {"block_r": 64}, "block-r"),
    ("performer", {"pass_": "bwd"}, "pass"),
    ("reformer", {"kv_heads": 1, "heads": 2}, "kv_heads"),
])
def test_bad_parameters_name_the_field(impl, kw, field):
    with pytest.raises(ValueError, match=field):
        sim(impl, 4096, **kw)


def test_cli_attention_impl_performer(capsys):
    from costmodel.cli.main import main

    assert main(["attention", "--impl", "performer", "--features", "64", "--causal", "--batch", "1", "--heads", "2",
                 "--seq-len", "1024", "--head-dim", "64", "--gpu", GPU]) == 0
    out = capsys.readouterr().out
    assert "inter_qs" in out and "peak memory" in out
    assert main(["attention", "--impl", "flash2", "--features", "64", "--batch", "1", "--heads", "2",
                 "--seq-len", "1024", "--head-dim", "64"]) == 2
    assert "--features" in capsys.readouterr().err


def test_simulated_kernels_are_the_programs_tagged_ops():
    """Each ``# [name]`` tag in costmodel/validation/approx_torch.py is a simulated kernel and each kernel is tagged: the
    simulator and the program tell the same story (a cat's second slice copy, ``cat_x_prev``, shares its tag)."""
    import re
    from pathlib import Path

    src = (Path(__file__).resolve().parent.parent / "costmodel" / "validation" / "approx_torch.py").read_text()

    def tags(fn: str) -> set[str]:
        body = src[src.index(f"def {fn}("):]
        body = body[:body.index("\ndef ", 1)]
        comments = " ".join(line.split("#", 1)[1] for line in body.splitlines() if "#" in line)
        return {t for t in re.findall(r"\[([a-z][a-z_0-9*]*)\]", comments) if "*" not in t}

    feats = tags("performer_features")
    cases = {
        ("linformer", False): tags("linformer_attention"),
        ("performer", False): {f"{p}_{t}" for p in "qk" for t in feats} | {"kv", "ksum", "num", "den", "div"},
        ("performer", True): {f"{p}_{t}" for p in "qk" for t in feats} | (tags("performer_attention") - {
            "kv", "ksum", "num", "den"}),
        ("reformer", True): tags("reformer_attention"),
    }
    for (impl, causal), want in cases.items():
        got = {k.name for k in sim(impl, 2048, causal=causal).kernels}
        got = {n.removesuffix("_prev") if n.startswith("cat_") else n for n in got}
        assert got == want, (impl, causal, sorted(got ^ want))
