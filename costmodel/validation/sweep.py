"""The validation sweep: which attention configurations ``ioaware validate`` runs.

A case is one family (``costmodel.validation.families``) at one shape (``schema.CaseConfig``).
The grid follows the FlashAttention-2 paper's benchmark (Dao 2023, section 4.1), plus
decode against KV caches of 1k to 16k tokens. Pure Python: tested on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

from costmodel.validation.families import TORCH_FAMILIES
from costmodel.validation.schema import CaseConfig

# The sweep (FlashAttention-2 paper, Dao 2023, section 4.1: batch x seq_len = 16k tokens,
# hidden 2048, so 32 heads of 64 or 16 heads of 128; this keeps B*H*N large enough to
# fill the GPU at every N while the work per configuration stays bounded).
TOKENS = 16384
HIDDEN = 2048
SEQ_LENS = (512, 1024, 2048, 4096, 8192, 16384)
HEAD_DIMS = (64, 128)
STANDARD_MAX_N = 4096  # S and P in HBM take B*H*N^2*8 bytes: 4 GiB at N = 4096 (torch math: more, fp32 copies)
BACKWARD_MAX_N = 8192
BACKWARD_TILES = {64: (64, 64), 128: (32, 64)}  # kernels.flash_backward.default_config: what fits in shared memory
DECODE_BATCHES = (1, 16)  # 1: B*H blocks leave most SMs idle, the case split-KV decoding is for
DECODE_KV_LENS = (1024, 4096, 16384)
DECODE_SPLITS = (4, 8)  # at most the 8 key tiles (of 128) of the shortest cache
WINDOWS = (1024, 4096)


@dataclass(frozen=True)
class Case:
    family: str
    config: CaseConfig

    @property
    def source(self) -> str:
        return "torch" if self.family in TORCH_FAMILIES else "ours"

    def label(self) -> str:
        return f"{self.family} {self.config.label()}"

    def to_json(self) -> dict:
        return {"family": self.family, "config": self.config.model_dump()}

    @classmethod
    def from_json(cls, data: dict) -> "Case":
        return cls(data["family"], CaseConfig.model_validate(data["config"]))


def _cfg(batch, heads, n, d, dtype="fp32", causal=False, kv_heads=None, kv_len=None, **extra) -> CaseConfig:
    return CaseConfig(batch=batch, heads=heads, kv_heads=kv_heads or heads, seq_len=n, kv_len=kv_len or n,
                  head_dim=d, dtype=dtype, causal=causal, **extra)


def sweep(quick: bool = False, families: tuple[str, ...] | None = None, torch: bool = True,
          block_r: int = 64, block_c: int = 64, seq_lens: tuple[int, ...] | None = None) -> list[Case]:
    """The configurations to run, shortest sequences first.

    ``seq_lens`` keeps only the forward/backward configurations of those N (decode,
    whose N is 1, is kept whole): for a sweep split over several GPU sessions.
    """
    keep = seq_lens
    seq_lens = (1024, 4096) if quick else SEQ_LENS
    head_dims = (64,) if quick else HEAD_DIMS
    tiles = dict(block_r=block_r, block_c=block_c)
    cases: list[Case] = []
    for d in head_dims:
        heads = HIDDEN // d
        for n in seq_lens:
            batch = max(1, TOKENS // n)
            for causal in (False, True):
                if n <= STANDARD_MAX_N:
                    cases.append(Case("standard_fwd", _cfg(batch, heads, n, d, causal=causal)))
                cases.append(Case("flash2_fwd", _cfg(batch, heads, n, d, causal=causal, **tiles)))
                cases.append(Case("flash1_fwd", _cfg(batch, heads, n, d, causal=causal, **tiles)))
                if n <= BACKWARD_MAX_N:
                    br, bc = BACKWARD_TILES[d]
                    cases.append(Case("flash_bwd", _cfg(batch, heads, n, d, causal=causal, block_r=br, block_c=bc)))
                if torch:
                    for family in TORCH_FAMILIES:
                        if family == "torch_sdpa_math" and n > STANDARD_MAX_N:
                            continue
                        dtype = "bf16" if causal else "fp16"  # both precisions, half the runs
                        cases.append(Case(family, _cfg(batch, heads, n, d, dtype=dtype, causal=causal)))
            for window in (WINDOWS[:1] if quick else WINDOWS):
                if window < n:
                    cases.append(Case("window_fwd", _cfg(batch, heads, n, d, causal=True, window=window, **tiles)))
        # Decode: one new token per sequence against a KV cache, grouped heads (4 queries per kv head).
        for batch in DECODE_BATCHES:
            for kv_len in ((4096,) if quick else DECODE_KV_LENS):
                c = dict(kv_heads=heads // 4, kv_len=kv_len)
                cases.append(Case("decode", _cfg(batch, heads, 1, d, **c)))
                for splits in (DECODE_SPLITS[-1:] if quick else DECODE_SPLITS):
                    cases.append(Case("flash_decoding", _cfg(batch, heads, 1, d, splits=splits, **c)))
    # Shortest sequences first, across families and head dims, so a time budget that runs
    # out drops the longest (costliest) configurations of every family, not whole families.
    if keep:
        cases = [c for c in cases if c.config.seq_len == 1 or c.config.seq_len in keep]
    cases.sort(key=lambda c: c.config.seq_len)
    if families:
        unknown = set(families) - {c.family for c in cases} - set(TORCH_FAMILIES)
        if unknown:
            raise ValueError(f"--families: unknown {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.family in families]
    return cases
