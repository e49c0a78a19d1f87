"""costmodel/inference.py: the decode-step and prefill lower bounds, worked by hand from
Llama-2-7B's config.json (32 layers, d_model 4096, 32 heads, SwiGLU 11008, vocab 32000;
6,738,415,616 parameters) and the A100 80 GB datasheet (2,039 GB/s, 312 TFLOP/s fp16)."""
import numpy as np
import pytest

from costmodel.inference import decode_step_bound, prefill_bound
from costmodel.models import load_model
from hardware_specs import load_gpu

A100 = load_gpu("a100-sxm4-80gb")
LLAMA = load_model("llama2-7b")
PARAMS = 6_738_415_616
KV_PER_TOKEN = 2 * 32 * 32 * 128 * 2  # K and V, 32 layers, 32 kv heads, d 128, fp16
# Matmul FLOPs per token outside attention: 2 x (4 h^2 attention + 3 h f MLP per layer) x 32 + 2 h V
DENSE = 2 * (4 * 4096 * 4096 + 3 * 4096 * 11008) * 32 + 2 * 4096 * 32000


def test_decode_step_llama2_7b_fp16_by_hand():
    b = decode_step_bound(A100, LLAMA, seq_len=4096, batch=4, weight_dtype="fp16")
    assert b.weights_bytes == 2 * PARAMS
    assert b.kv_bytes == 4 * 4096 * KV_PER_TOKEN
    # one token per sequence: the dense matmuls, plus Q K^T and P V over 4096 keys (2 x 2 a d k per layer)
    assert b.flops == 4 * (DENSE + 32 * 2 * 2 * 32 * 128 * 4096)
    assert b.time_s == pytest.approx((2 * PARAMS + 4 * 4096 * KV_PER_TOKEN) / 2.039e12, rel=1e-12)
    assert b.bound == "hbm" and b.tokens == 4 and b.tokens_per_s == pytest.approx(4 / b.time_s)


def test_prefill_llama2_7b_is_compute_bound_by_hand():
    """4096 tokens: 4096 x (dense + causal attention over (S+1)/2 keys on average) FLOPs at 312 TFLOP/s."""
    b = prefill_bound(A100, LLAMA, seq_len=4096, batch=1, weight_dtype="fp16")
    flops = 4096 * (DENSE + 32 * 2 * 2 * 32 * 128 * (4097 / 2))
    assert b.flops == pytest.approx(flops, rel=1e-12)
    assert b.hbm_bytes == 2 * PARAMS + 4096 * KV_PER_TOKEN
    assert b.bound == "fp16_tensor" and b.time_s == pytest.approx(flops / 312e12, rel=1e-12)
    assert b.tokens == 4096


def test_bounds_broadcast_over_arrays_as_a_loop_does():
    seq = np.array([512, 2048, 8192])
    batch = np.array([[1], [16], [64]])
    swept = decode_step_bound(A100, LLAMA, seq_len=seq, batch=batch, weight_dtype="fp16")
    for i, b in enumerate(batch[:, 0]):
        for j, n in enumerate(seq):
            one = decode_step_bound(A100, LLAMA, seq_len=int(n), batch=int(b), weight_dtype="fp16")
            assert swept.time_s[i, j] == pytest.approx(one.time_s, rel=1e-12) and swept.bound[i, j] == one.bound


def test_model_numbers_without_a_config_give_the_same_bound():
    shape = dict(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128,
                 ffn_dim=11008, ffn_type="swiglu")
    by_cfg = prefill_bound(A100, LLAMA, seq_len=1024, batch=2, weight_dtype="bf16")
    by_numbers = prefill_bound(A100, seq_len=1024, batch=2, weight_dtype="bf16", sliding_window=None, **shape)
    assert by_numbers.model_dump() == by_cfg.model_dump()


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="seq_len"):
        decode_step_bound(A100, LLAMA, seq_len=0)
    with pytest.raises(TypeError, match="hidden"):
        decode_step_bound(A100, LLAMA, seq_len=8, hidden=4096)
    with pytest.raises(TypeError, match="matmul_unit"):
        decode_step_bound(A100, LLAMA, seq_len=8, weight_dtype=2.0)
