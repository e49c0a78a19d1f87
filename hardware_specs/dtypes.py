"""Element sizes of the storage precisions the cost model knows.

Bytes per element: IEEE 754 binary64/binary32/binary16; bfloat16 (Google brain float);
FP8 E4M3/E5M2 (Micikevicius et al. 2022, "FP8 Formats for Deep Learning"); int8; int4
packed two to a byte (as GPTQ/AWQ store them; the seed notes' n_byte table gives 0.5).
"""

DTYPE_BYTES: dict[str, float] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,  # stored as fp32; only the tensor-core multiply rounds to 10 mantissa bits
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype``; a clear error naming the accepted names otherwise."""
    try:
        return DTYPE_BYTES[dtype]
    except (KeyError, TypeError):
        raise ValueError(f"dtype: unknown {dtype!r}; allowed: {', '.join(DTYPE_BYTES)}") from None
