"""The shapes torch's attention implementations are measured on: a calibration grid the timing
parameters are fitted on, and a held-out grid, disjoint from it, that only checks them.

Calibration (prefill): the FlashAttention-2 paper's benchmark layout, 16k tokens a batch and a
hidden size of 2048 (B = 16384 / N, H = 2048 / d), N in {512, 2048, 8192}, d in {64, 128},
causal and not; one GQA shape (H 32 / H_kv 8); d = 256 at N = 2048 (H 8, B 8), causal and not;
decode against caches of 2k and 8k at batch 1 and 16, MHA and GQA 4, and one decode each at
d = 256 and d = 64 (the d = 256 and d = 64 shapes added 2026-12-02: the first grid had no
d = 256, so kernels that exist only there, CUTLASS's gmem-output forward, were never fitted); and a
block-count sweep (``block_sweep_shapes``). Held-out: other N (non-powers of two among them), GQA 1/4/8, d 64/128/256,
N up to 32k, decode at batch 1 to 64 against caches of 1k to 32k. Standard (materialising)
implementations run only where their score matrix S (fp32) stays under ``MAX_SCORE_BYTES``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

IMPLS = ("torch-flash", "torch-cudnn", "torch-efficient", "torch-math", "torch-eager")
FUSED = ("torch-flash", "torch-cudnn", "torch-efficient")
PASSES = ("fwd", "fwd+bwd")
MAX_SCORE_BYTES = 8 * 2**30  # B*H*N*L*4: math and eager hold S, P (and dP, dS in the backward)


class Shape(BaseModel):
    """One attention call: Q (B, H, N, d), K and V (B, H_kv, L, d), bf16."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: int
    heads: int
    kv_heads: int
    seq_len: int
    kv_len: int
    head_dim: int
    causal: bool = False
    dtype: str = "bf16"

    @property
    def decode(self) -> bool:
        return self.seq_len == 1

    def label(self) -> str:
        g = self.heads // self.kv_heads
        mask = " causal" if self.causal else ""
        if self.decode:
            return f"decode B{self.batch} H{self.heads}/{self.kv_heads} L{self.kv_len} d{self.head_dim}"
        return f"B{self.batch} H{self.heads}/{self.kv_heads} N{self.seq_len} d{self.head_dim}{mask}" + (
            f" (GQA {g})" if g > 1 else "")


class Case(BaseModel):
    """A shape run by one implementation in one pass, on one grid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    impl: str
    pass_: str
    shape: Shape
    grid: str  # "calibration" | "heldout" | "probe" (grids.ncu_probe_cases)

    def key(self) -> str:
        return f"{self.grid}|{self.impl}|{self.pass_}|{self.shape.label()}"


def _prefill(n, d, causal, heads=None, kv_heads=None, batch=None) -> Shape:
    h = heads or 2048 // d
    return Shape(batch=batch or max(1, 16384 // n), heads=h, kv_heads=kv_heads or h, seq_len=n, kv_len=n,
                 head_dim=d, causal=causal)


def _decode(b, h, hkv, l_, d) -> Shape:
    return Shape(batch=b, heads=h, kv_heads=hkv, seq_len=1, kv_len=l_, head_dim=d)


def calibration_shapes() -> list[Shape]:
    out = [_prefill(n, d, c) for n in (512, 2048, 8192) for d in (64, 128) for c in (False, True)]
    out += [_prefill(2048, 128, c, heads=32, kv_heads=8, batch=4) for c in (False, True)]
    out += [_prefill(2048, 256, c) for c in (False, True)]
    out += [_decode(b, 32, hkv, l_, 128) for b in (1, 16) for hkv in (32, 8) for l_ in (2048, 8192)]
    out += [_decode(8, 16, 16, 4096, 256), _decode(16, 32, 8, 2048, 64)]
    return out + block_sweep_shapes()


def block_sweep_shapes() -> list[Shape]:
    """Prefill shapes whose grids have other block counts than the 16k-token layout's (added 2026-12-02,
    reps 2 and 3): there every shape of one head_dim has the same blocks per SM, so a block's own latency
    (rounds x block_fixed_s) and the host time were one constant; here FA2's forward runs 2 rounds
    (B1 H16 N4096) to 31 (B4 H32 N8192 d64), at N up to 16k."""
    out = [_prefill(4096, d, c, heads=16, batch=1) for d in (64, 128) for c in (False, True)]
    out += [_prefill(8192, 64, False, heads=32, batch=4), _prefill(16384, 128, True, heads=16, batch=2)]
    out += [_prefill(8192, 256, c, heads=8, batch=2) for c in (False, True)]
    return out


def heldout_shapes() -> list[Shape]:
    out = [
        _prefill(768, 64, False, batch=16),
        _prefill(1536, 128, True, heads=32, kv_heads=8, batch=8),
        _prefill(3000, 128, True, batch=4),
        _prefill(3000, 64, False, heads=32, kv_heads=4, batch=4),
        _prefill(4096, 256, False, heads=8, batch=4),
        _prefill(1024, 256, True, heads=16, kv_heads=2, batch=8),
        _prefill(5000, 128, False, heads=32, kv_heads=8, batch=2),
        _prefill(6144, 64, True, heads=16, batch=2),
        _prefill(12288, 128, True, heads=16, batch=1),
        _prefill(16384, 64, False, heads=32, kv_heads=8, batch=1),
        _prefill(32768, 128, True, heads=32, kv_heads=8, batch=1),
        _prefill(32768, 64, False, heads=16, batch=1),
    ]
    out += [_decode(1, 32, 8, 32768, 128), _decode(4, 32, 8, 16384, 128), _decode(64, 32, 8, 1000, 128),
            _decode(8, 32, 32, 4096, 128), _decode(1, 64, 8, 16384, 128), _decode(32, 32, 4, 3000, 64),
            _decode(2, 16, 16, 24576, 256), _decode(64, 32, 8, 4096, 128)]
    return out


def score_bytes(s: Shape) -> int:
    return s.batch * s.heads * s.seq_len * s.kv_len * 4


def runs(impl: str, s: Shape) -> bool:
    """Whether ``impl`` is measured on ``s``: materialising ones only while S fits MAX_SCORE_BYTES."""
    return impl in FUSED or score_bytes(s) <= MAX_SCORE_BYTES


def cases(grid: str) -> list[Case]:
    shapes = calibration_shapes() if grid == "calibration" else heldout_shapes()
    out = []
    for s in shapes:
        for impl in IMPLS:
            if not runs(impl, s):
                continue
            for p in (("fwd",) if s.decode else PASSES):
                out.append(Case(impl=impl, pass_=p, shape=s, grid=grid))
    return out


def ncu_cases() -> list[Case]:
    """The subset profiled by Nsight Compute: the calibration grid's fused decodes (GPU time beside
    the call's, for the host cost), every held-out fused forward (prefill and decode), the
    fused fwd+bwd of the GQA and long held-out shapes, and a few materialising ones."""
    out = [c for c in cases("calibration") if c.shape.decode and c.impl in FUSED]
    for c in cases("heldout"):
        s = c.shape
        if c.impl in FUSED and (c.pass_ == "fwd" or s.heads != s.kv_heads or s.seq_len >= 12288):
            out.append(c)
        elif c.impl in ("torch-math", "torch-eager") and c.pass_ == "fwd" and s.seq_len in (768, 3000):
            out.append(c)
    return out


def ncu_bwd_cases() -> list[Case]:
    """The calibration grid's fused fwd+bwd calls, cuDNN first: the backward's DRAM bytes are fitted on
    these (``gpu_run --ncu-set calibration-bwd``); the held-out fwd+bwd NCU cases only check."""
    order = ("torch-cudnn", "torch-flash", "torch-efficient")
    cal = [c for c in cases("calibration") if c.pass_ == "fwd+bwd" and c.impl in FUSED]
    return sorted(cal, key=lambda c: order.index(c.impl))


def ncu_probe_cases() -> list[Case]:
    """Nsight Compute probes of two DRAM misses of the held-out grid (``gpu_run --ncu-set probe``, grid
    ``probe``: in neither the calibration nor the held-out results): FlashAttention-2's causal forward at
    B4 H16 d128 around N = 3000 (read 32 % and wrote 80 % above Q, K, V and O there) and at N = 3072 / 4096,
    and the memory-efficient backward's d128 kernel at more sequence lengths (its reads pass the operands'
    by 12 % at N = 512 and 98 % at N = 8192)."""
    out = [Case(impl="torch-flash", pass_="fwd", shape=_prefill(n, 128, True, 16, 16, 4), grid="probe")
           for n in (2944, 3000, 3008, 3072, 4096)]
    out += [Case(impl="torch-flash", pass_="fwd", shape=_prefill(3000, 128, False, 16, 16, 4), grid="probe"),
            Case(impl="torch-flash", pass_="fwd", shape=_prefill(3000, 64, True, 32, 32, 4), grid="probe")]
    out += [Case(impl="torch-efficient", pass_="fwd+bwd", shape=_prefill(n, 128, False, 16, 16, b), grid="probe")
            for n, b in ((1024, 16), (4096, 4), (16384, 1))]
    out.append(Case(impl="torch-efficient", pass_="fwd+bwd", shape=_prefill(16384, 64, False, 32, 32, 1), grid="probe"))
    return out


def smoke_cases(grid: str) -> list[Case]:
    """The grid's cases with every shape shrunk to a few dozen tokens (the runner's CPU smoke test)."""
    out = []
    for c in cases(grid):
        s = c.shape
        small = s.model_copy(update={"batch": 1, "seq_len": min(s.seq_len, 48), "kv_len": min(s.kv_len, 80)})
        out.append(c.model_copy(update={"shape": small}))
    return out
