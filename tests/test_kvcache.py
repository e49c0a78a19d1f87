"""KV cache: the seed's GPT-3 example, GQA/MQA, sliding window, paged vs contiguous, batch fit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.kvcache import kv_cache_bytes, kv_cache_bytes_per_token, max_batch_that_fits, paged_kv_cache_bytes
from costmodel.models import ModelConfig, load_model


def test_kv_cache_gpt3_seed_example():
    """Seed lecture, module 5: GPT-3, 96 layers, 96 heads, dim_head 128, fp32:
    2 × 96 × (96 × 128) × 4 = "9.4 MB" per token; × 2048 tokens = "19.3 GB"."""
    cfg = load_model("gpt3-175b")
    per_token = kv_cache_bytes_per_token(cfg, "fp32")
    assert per_token == 2 * 96 * (96 * 128) * 4 == 9_437_184
    assert round(per_token / 1e6, 1) == 9.4
    two_k = kv_cache_bytes(cfg, batch=1, seq_len=2048, dtype="fp32")
    assert two_k.total_bytes == 2048 * 9_437_184 == 19_327_352_832
    assert round(two_k.total_bytes / 1e9, 1) == 19.3
    # the same from bare numbers, no ModelConfig
    assert kv_cache_bytes_per_token(None, "fp32", n_layers=96, n_kv_heads=96, head_dim=128) == 9_437_184


def test_llama2_70b_gqa_is_8x_smaller_than_mha():
    """Llama 2 70B: 64 query heads share 8 KV heads (Touvron et al. 2023 §2.2; Ainslie et al. 2023)."""
    cfg = load_model("llama2-70b")
    gqa = kv_cache_bytes_per_token(cfg, "bf16")
    mha = kv_cache_bytes_per_token(cfg, "bf16", n_kv_heads=64)
    assert gqa == 2 * 80 * 8 * 128 * 2 == 327_680
    assert mha / gqa == 8


def test_mqa_divides_by_the_head_count():
    cfg = load_model("llama2-7b")
    assert kv_cache_bytes_per_token(cfg, "fp16") / kv_cache_bytes_per_token(cfg, "fp16", n_kv_heads=1) == 32


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 128), st.integers(1, 64), st.integers(1, 256), st.sampled_from(["fp32", "bf16", "fp8", "int4"]))
def test_gqa_with_all_heads_is_mha(n_layers, n_heads, head_dim, dtype):
    base = dict(name="x", source="x", vocab_size=10, d_model=n_heads * head_dim, n_layers=n_layers, n_heads=n_heads,
                ffn_dim=4, ffn_type="swiglu", norm_type="rmsnorm", attn_bias=False, mlp_bias=False,
                tied_embeddings=False, position_embedding="rope", max_seq_len=8)
    mha = ModelConfig(**base)  # n_kv_heads defaults to n_heads
    gqa = ModelConfig(**base, n_kv_heads=n_heads)
    e = {"fp32": 4, "bf16": 2, "fp8": 1, "int4": 0.5}[dtype]
    seed_formula = 2 * n_layers * (n_heads * head_dim) * e
    assert kv_cache_bytes_per_token(mha, dtype) == kv_cache_bytes_per_token(gqa, dtype) == seed_formula


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 512), st.integers(0, 512), st.integers(0, 100_000), st.integers(0, 100_000), st.integers(1, 8))
def test_kv_cache_linear_in_batch_and_seq_len(b1, b2, n1, n2, k):
    cfg = load_model("llama3-8b")  # no sliding window
    kv = lambda b, n: kv_cache_bytes(cfg, b, n).total_bytes  # noqa: E731
    assert kv(b1 + b2, n1) == kv(b1, n1) + kv(b2, n1)
    assert kv(b1, n1 + n2) == kv(b1, n1) + kv(b1, n2)
    assert kv(k * b1, n1) == k * kv(b1, n1)


def test_sliding_window_caps_tokens_held():
    cfg = load_model("mistral-7b")  # window 4096, Jiang et al. 2023 §2 rolling buffer cache
    assert kv_cache_bytes(cfg, 1, 3000).tokens_held == 3000
    assert kv_cache_bytes(cfg, 1, 8192).tokens_held == 4096
    assert kv_cache_bytes(cfg, 1, 8192, sliding_window=None).tokens_held == 8192
    assert kv_cache_bytes(cfg, 1, 8192, sliding_window=1024).tokens_held == 1024
    assert kv_cache_bytes(cfg, 2, 32768).total_bytes == 2 * 4096 * 2 * 32 * 8 * 128 * 2


# ---------------------------------------------------------------- paged against contiguous


def brute_force_paged(lengths, block_size, max_len):
    """Append tokens one at a time; take a new block whenever the last one is full."""
    out = []
    for n in lengths:
        blocks, free_slots = 0, 0
        for _ in range(n):
            if free_slots == 0:
                blocks, free_slots = blocks + 1, block_size
            free_slots -= 1
        out.append((blocks, blocks * block_size - n, max_len - n))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2048), min_size=1, max_size=16), st.sampled_from([1, 8, 16, 32, 128]))
def test_paged_allocation_against_block_enumeration(lengths, block_size):
    cfg = load_model("llama2-7b")  # max_seq_len 4096
    per_token = kv_cache_bytes_per_token(cfg, "bf16")
    r = paged_kv_cache_bytes(cfg, lengths, block_size)
    expected = brute_force_paged(lengths, block_size, cfg.max_seq_len)
    assert list(r.blocks) == [b for b, _, _ in expected]
    assert list(r.paged_waste_bytes) == [w * per_token for _, w, _ in expected]
    assert list(r.contiguous_waste_bytes) == [w * per_token for _, _, w in expected]
    assert np.all(r.paged_waste_bytes < block_size * per_token)  # waste < one block per sequence
    assert r.total_paged_waste_bytes == sum(w for _, w, _ in expected) * per_token
    assert r.total_used_bytes == sum(lengths) * per_token
    assert r.total_contiguous_bytes == len(lengths) * cfg.max_seq_len * per_token
    assert r.total_paged_bytes <= r.total_contiguous_bytes


def test_paged_rejects_sequences_longer_than_the_reservation():
    with pytest.raises(ValueError, match="max_seq_len"):
        paged_kv_cache_bytes(load_model("gpt2"), [2000], 16)


# ---------------------------------------------------------------- the largest batch that fits


def test_max_batch_llama2_7b_on_80gb_by_hand():
    """Weights 6,738,415,616 × 2 B; KV 2·32·32·128·2 B · 4096 tokens = 2 GiB per sequence:
    floor((80e9 − 13,476,831,232) / 2,147,483,648) = floor(30.98) = 30."""
    fit = max_batch_that_fits(load_model("llama2-7b"), 80e9, 4096, "bf16", "bf16")
    assert fit.weights_bytes == 13_476_831_232
    assert fit.kv_bytes_per_sequence == 2_147_483_648
    assert fit.max_batch == 30


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["tinyllama-1.1b", "llama2-7b", "mistral-7b", "llama3-8b"]),
    st.integers(1, 200).map(lambda g: g * 1e9),
    st.integers(1, 32768),
    st.sampled_from(["bf16", "fp8", "int4"]),
    st.integers(0, 4).map(lambda r: r * 1e9),
)
def test_max_batch_is_the_largest_that_fits(name, mem, seq_len, kv_dtype, reserve):
    cfg = load_model(name)
    fit = max_batch_that_fits(cfg, mem, seq_len, "bf16", kv_dtype, reserve_bytes=reserve)
    used = lambda b: fit.weights_bytes + reserve + kv_cache_bytes(cfg, b, seq_len, kv_dtype).total_bytes  # noqa: E731
    b = fit.max_batch
    assert b >= 0
    if b > 0:
        assert used(b) <= mem
    assert used(b + 1) > mem


def test_reserve_fraction_and_arrays():
    cfg = load_model("llama3-8b")
    mems = np.array([24e9, 40e9, 80e9])
    seq = np.array([2048, 8192])[:, None]
    swept = max_batch_that_fits(cfg, mems, seq, reserve_fraction=0.1)
    assert swept.max_batch.shape == (2, 3)
    for i, s in enumerate(seq[:, 0]):
        for j, m in enumerate(mems):
            assert swept.max_batch[i, j] == max_batch_that_fits(cfg, float(m), int(s), reserve_fraction=0.1).max_batch


def test_weights_that_do_not_fit_give_zero():
    fit = max_batch_that_fits(load_model("llama2-70b"), 80e9, 4096)
    assert fit.max_batch == 0 and fit.free_bytes < 0


def test_arrays_broadcast_like_a_loop():
    cfg = load_model("mistral-7b")
    batch = np.array([1, 4, 16])[:, None]
    seq = np.array([100, 4096, 10_000])
    swept = kv_cache_bytes(cfg, batch, seq, "fp8")
    assert swept.total_bytes.shape == (3, 3)
    for i, b in enumerate(batch[:, 0]):
        for j, s in enumerate(seq):
            assert swept.total_bytes[i, j] == kv_cache_bytes(cfg, int(b), int(s), "fp8").total_bytes


def test_dtype_as_a_number_of_bytes():
    cfg = load_model("llama2-7b")
    assert kv_cache_bytes_per_token(cfg, 2) == kv_cache_bytes_per_token(cfg, "bf16")
    assert np.array_equal(kv_cache_bytes_per_token(cfg, [4, 0.5]),
                          [kv_cache_bytes_per_token(cfg, "fp32"), kv_cache_bytes_per_token(cfg, "int4")])


def test_bad_input_names_argument_value_and_allowed():
    cfg = load_model("llama2-7b")
    with pytest.raises(ValueError) as exc:
        kv_cache_bytes(cfg, batch=-3, seq_len=10)
    assert "batch" in str(exc.value) and "-3" in str(exc.value) and "greater than or equal to 0" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        kv_cache_bytes_per_token(cfg, "fp12")
    assert "fp12" in str(exc.value) and "bf16" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        max_batch_that_fits(cfg, 80e9, 4096, reserve_fraction=1.5)
    assert "reserve_fraction" in str(exc.value) and "less than 1" in str(exc.value)
    with pytest.raises(TypeError, match="n_layers"):
        kv_cache_bytes_per_token(None, "bf16", n_kv_heads=8, head_dim=128)
