"""FLOPs: against Kaplan Table 1, Narayanan eq. (3), PaLM's MFU, GPT-3's compute, and brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.flops import (
    decode_flops_per_token, forward_flops_per_token, matmul_params, mean_keys_per_query, model_flops_utilization,
    training_flops,
)
from costmodel.models import ModelConfig, load_model


def test_kaplan_table_1_forward_count():
    """Kaplan et al. 2020 Table 1: C_forward = 2N + 2·n_layer·n_ctx·d_attn (+ de-embed 2·d_model·n_vocab),
    N = 2·d_model·n_layer·(2·d_attn + d_ff). Their attention term counts QKᵀ and PV at the
    causal average; the exact causal average is (S+1)/2 keys, hence n_ctx → S + 1 here.
    Non-causal, every query meets all S keys: 4·n_layer·S·d_attn."""
    cfg = load_model("gpt2")  # MHA, d_ff = 4·d_model: Kaplan's setting
    h, L, V, S = cfg.d_model, cfg.n_layers, cfg.vocab_size, cfg.max_seq_len
    N = 2 * h * L * (2 * h + cfg.ffn_dim)
    causal = forward_flops_per_token(cfg, S, causal=True)
    assert causal.layers == 2 * N + 2 * L * (S + 1) * h
    assert causal.lm_head == 2 * h * V
    full = forward_flops_per_token(cfg, S, causal=False)
    assert full.layers == 2 * N + 4 * L * S * h


def test_narayanan_2021_eq_3_with_full_recompute():
    """Narayanan et al. 2021 eq. (3): F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) FLOPs per
    iteration of B sequences of s tokens with activation recomputation (GPT layers, d_ff = 4h,
    no causal discount)."""
    cfg = load_model("gpt3-175b")
    B, s, l, h, V = 1536, 2048, cfg.n_layers, cfg.d_model, cfg.vocab_size
    expected = 96 * B * s * l * h**2 * (1 + s / (6 * h) + V / (16 * l * h))
    got = training_flops(cfg, tokens=B * s, seq_len=s, causal=False, recompute="full").total_flops
    assert got == pytest.approx(expected, rel=1e-12)


def test_gpt3_training_compute_brown_2020_table_d1():
    """Brown et al. 2020 Table D.1: GPT-3 175B, 300B tokens, 3.14E+23 training FLOPs (6·N·D, no attention)."""
    t = training_flops(load_model("gpt3-175b"), tokens=300e9)
    assert float(f"{t.six_n_d_flops:.3g}") == 3.14e23
    assert t.total_flops > t.six_n_d_flops  # the attention term comes on top
    assert t.total_flops == pytest.approx(t.six_n_d_flops + t.attention_flops, rel=1e-12)


# PaLM 540B, Chowdhery et al. 2022 Table 1 (118 layers, d_model 18432, 48 heads, 540.35B parameters) and
# §2 (SwiGLU with d_ff = 4·d_model, multi-query attention, head size 256, no biases, shared input/output
# embeddings, 256k vocabulary, sequence length 2048).
PALM_540B = ModelConfig(
    name="palm-540b", source="Chowdhery et al. 2022 Table 1 and Section 2", vocab_size=256000, d_model=18432,
    n_layers=118, n_heads=48, n_kv_heads=1, head_dim=256, ffn_dim=4 * 18432, ffn_type="swiglu",
    norm_type="layernorm", attn_bias=False, mlp_bias=False, tied_embeddings=True, position_embedding="rope",
    max_seq_len=2048,
)


def test_palm_mfu_appendix_b():
    """PaLM Appendix B / Table 3: 238.3K tokens/s on 6144 TPU v4 chips (275 TFLOP/s bf16 peak each) is
    46.2% MFU, with model FLOPs per token 6N + 12·L·H·Q·T."""
    assert round(matmul_params(PALM_540B) / 1e9, 2) == 540.35
    mfu = model_flops_utilization(PALM_540B, tokens_per_s=238.3e3, peak_flops_per_s=275e12, n_devices=6144)
    assert round(mfu, 3) == 0.462
    L, H, Q, T, N = 118, 48, 256, 2048, matmul_params(PALM_540B)
    assert mfu == pytest.approx((6 * N + 12 * L * H * Q * T) * 238.3e3 / (6144 * 275e12), rel=1e-12)


def test_recompute_adds_forward_work():
    cfg = load_model("llama2-7b")
    fwd = forward_flops_per_token(cfg, 4096)
    none, sel, full = (training_flops(cfg, 1, 4096, recompute=r).flops_per_token for r in ("none", "selective", "full"))
    assert none == pytest.approx(3 * fwd.total)
    assert sel == pytest.approx(none + cfg.n_layers * (fwd.attn_scores + fwd.attn_values))
    assert full == pytest.approx(none + fwd.layers)
    assert none < sel < full


# ---------------------------------------------------------------- brute force over positions and heads


def brute_force_forward_flops(cfg: ModelConfig, S: int, causal: bool, window):
    """Sum of 2·m·k·n over every matmul of one forward pass of S tokens, per token."""
    h, a, g, d, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim
    total = 0
    for _layer in range(cfg.n_layers):
        total += 2 * S * h * a * d + 2 * 2 * S * h * g * d  # X·Wq, X·Wk, X·Wv
        for _head in range(a):
            for i in range(S):  # query position i sees keys j
                keys = [j for j in range(S) if not causal or (j <= i and (window is None or i - j < window))]
                total += 2 * d * len(keys)  # q_i · k_j
                total += 2 * d * len(keys)  # sum_j p_ij v_j
        total += 2 * S * a * d * h  # output projection
        total += (3 if cfg.ffn_type == "swiglu" else 2) * 2 * S * h * f
    total += 2 * S * h * cfg.vocab_size
    return total / S


@st.composite
def small_models(draw):
    g = draw(st.integers(1, 3))
    return ModelConfig(
        name="small", source="hypothesis", vocab_size=draw(st.integers(1, 50)), d_model=draw(st.integers(1, 16)),
        n_layers=draw(st.integers(1, 2)), n_heads=g * draw(st.integers(1, 2)), n_kv_heads=g,
        head_dim=draw(st.integers(1, 8)), ffn_dim=draw(st.integers(1, 32)),
        ffn_type=draw(st.sampled_from(["gelu_mlp", "swiglu"])), norm_type="rmsnorm", attn_bias=False,
        mlp_bias=False, tied_embeddings=False, position_embedding="rope", max_seq_len=64,
    )


@settings(max_examples=60, deadline=None)
@given(small_models(), st.integers(1, 24), st.booleans(), st.one_of(st.none(), st.integers(1, 30)))
def test_forward_equals_brute_force(cfg, S, causal, window):
    got = forward_flops_per_token(cfg, S, causal=causal, sliding_window=window if causal else None).total
    assert got == pytest.approx(brute_force_forward_flops(cfg, S, causal, window if causal else None), rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 300), st.one_of(st.none(), st.integers(1, 400)))
def test_mean_keys_is_the_exact_causal_sum(S, W):
    """Σ over query positions i = 1..S of min(i, W), enumerated, against the closed form."""
    enumerated = sum(min(i, W) if W else i for i in range(1, S + 1))
    assert mean_keys_per_query(S, True, W) * S == pytest.approx(enumerated, rel=1e-12)
    if W is None:
        assert mean_keys_per_query(S, True) == (S + 1) / 2
    assert mean_keys_per_query(S, False, W) == S


@settings(max_examples=50, deadline=None)
@given(small_models(), st.integers(1, 40), st.one_of(st.none(), st.integers(1, 50)))
def test_prefill_equals_the_sum_of_decode_steps(cfg, S, W):
    """A causal forward over S tokens does the work of S decode steps at contexts 0..S-1."""
    decode = sum(decode_flops_per_token(cfg, c, sliding_window=W).total for c in range(S))
    assert forward_flops_per_token(cfg, S, causal=True, sliding_window=W).total * S == pytest.approx(decode, rel=1e-12)


def test_decode_attention_is_capped_by_the_window():
    cfg = load_model("mistral-7b")  # window 4096 (Jiang et al. 2023 Table 1)
    assert decode_flops_per_token(cfg, 10_000).keys_per_query == 4096
    assert decode_flops_per_token(cfg, 10_000, sliding_window=None).keys_per_query == 10_001
    step = decode_flops_per_token(cfg, 100)
    assert step.attn_scores == 2 * 32 * 128 * 101


def test_arrays_broadcast_like_a_loop():
    cfg = load_model("llama3-8b")
    seq = np.array([128, 1024, 8192])
    kv = np.array([1, 8, 32])[:, None]
    swept = forward_flops_per_token(cfg, seq, n_kv_heads=kv)
    assert swept.total.shape == (3, 3)
    for i, g in enumerate(kv[:, 0]):
        for j, s in enumerate(seq):
            one = forward_flops_per_token(cfg.model_copy(update={"n_kv_heads": int(g)}), int(s))
            assert swept.total[i, j] == pytest.approx(one.total, rel=1e-15)
    tokens = np.array([1e9, 1e10])
    assert np.allclose(training_flops(cfg, tokens).total_flops, [training_flops(cfg, t).total_flops for t in tokens])


def test_bad_arguments_name_themselves():
    cfg = load_model("gpt2")
    with pytest.raises(ValueError, match="seq_len"):
        forward_flops_per_token(cfg, 0)
    with pytest.raises(ValueError, match="recompute"):
        training_flops(cfg, 1, recompute="some")
    with pytest.raises(ValueError, match="peak_flops_per_s"):
        model_flops_utilization(cfg, 1e3, -1.0)
    with pytest.raises(TypeError, match="d_modle"):
        forward_flops_per_token(cfg, 10, d_modle=5)


def test_attention_core_flops_fa2_paper_count():
    """Dao 2023 section 4.1: forward 4 seqlen^2 head_dim num_heads without a mask, 2.5x that
    backward; causal counts the N (N + 1) / 2 attended pairs; decode one query over L keys."""
    from costmodel.flops import attention_core_flops

    assert attention_core_flops(16, 2048, 128, causal=False) == 4 * 2048**2 * 128 * 16
    assert attention_core_flops(16, 2048, 128, causal=False, pass_="bwd") == 10 * 2048**2 * 128 * 16
    assert attention_core_flops(1, 1024, 64) == 4 * 64 * 1024 * 1025 / 2
    band = sum(min(i + 1, 100) for i in range(1024))  # each query sees itself and up to 99 earlier keys
    assert attention_core_flops(2, 1024, 64, sliding_window=100) == 4 * 64 * band * 2
    assert attention_core_flops(32, 1, 128, kv_len=4096, causal=False) == 4 * 128 * 4096 * 32
    with pytest.raises(ValueError, match="pass_"):
        attention_core_flops(1, 8, 8, pass_="both")
