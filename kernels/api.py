"""The public kernel API: every attention kernel of this package, one import away.

Inputs may be numpy arrays or numba device arrays: numpy in gives numpy out,
device arrays in give device arrays out. Arguments are checked before any launch;
errors name the argument, its value and what is allowed.

    standard_attention(q, k, v, causal=False, scale=None) -> o
    flash_attention(q, k, v, causal=False, block_r=64, block_c=64, window=None, scale=None) -> (o, lse)
    flash_attention_v1(q, k, v, causal=False, block_r=64, block_c=64, scale=None) -> (o, lse)
    flash_attention_backward(q, k, v, o, lse, do, causal=False, block_r=None, block_c=None,
                             scale=None) -> (dq, dk, dv)
    decode_attention(q, k_cache, v_cache, scale=None) -> (o, lse)
    flash_decoding(q, k_cache, v_cache, num_splits=None, scale=None) -> (o, lse)
    prepare_decode(q, k_cache, v_cache, num_splits=1, scale=None) -> step; step() -> (o, lse)
        (checked and bound once: each call is the kernel launches alone)

Shapes: q (batch, heads, N, d), k and v (batch, kv_heads, N, d), lse (batch, heads, N)
float32; decoding takes q (batch, heads, 1, d) and caches (batch, kv_heads, L, d).
head_dim is 32, 64 or 128; storage float32 or float16, arithmetic float32.
"""
from ._cuda import poisoned_outputs
from .decode_step import decode_attention, flash_decoding, prepare_decode
from .flash1 import flash_attention_v1
from .flash2 import flash_attention
from .flash_backward import flash_attention_backward
from .standard import standard_attention

__all__ = [
    "standard_attention",
    "flash_attention",
    "flash_attention_v1",
    "flash_attention_backward",
    "decode_attention",
    "flash_decoding",
    "prepare_decode",
    "poisoned_outputs",
]
