"""Hierarchical roofline: the lower-bound time of a piece of work on a GPU, and what binds it.

Model (Williams, Waterman & Patterson, "Roofline", CACM 52(4), 2009; extended to a
memory hierarchy as in Yang et al., "Hierarchical Roofline Analysis", arXiv:2009.02449):
every resource r (a memory level moving bytes, or a compute unit doing operations)
needs ``amount_r / attainable_rate_r`` seconds. With perfect overlap the work takes the
largest of those times, and that resource *binds*; ``overlap=False`` sums them instead,
an upper bound for work whose phases do not overlap.

Operations are split as FlashAttention-2 (Dao 2023, §3.1) argues they must be:
matrix-multiply FLOPs run on the matrix unit of their precision, other FLOPs on the FP32
SIMT lanes, and exponentials on the special-function units, each at its own rate.

Every function broadcasts over numpy arrays: pass arrays for amounts and get arrays back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from hardware_specs.schema import GPUSpec, MEMORY_LEVELS

# Matrix-unit for a storage precision when tensor cores are used, and without them.
# FP32 matmuls on tensor cores run as TF32 (A100 whitepaper, "TF32 Tensor Core operations").
_MATMUL_UNIT_TENSOR = {"fp64": "fp64_tensor", "fp32": "tf32_tensor", "tf32": "tf32_tensor",
                       "fp16": "fp16_tensor", "bf16": "bf16_tensor", "fp8": "fp8_tensor",
                       "int8": "int8_tensor"}
_MATMUL_UNIT_SIMT = {"fp64": "fp64", "fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}


def matmul_unit(dtype: str, tensor_cores: bool = True) -> str:
    """The compute unit a matmul in ``dtype`` runs on."""
    table = _MATMUL_UNIT_TENSOR if tensor_cores else _MATMUL_UNIT_SIMT
    if dtype not in table:
        raise ValueError(
            f"dtype: {dtype!r} has no {'tensor-core' if tensor_cores else 'SIMT'} matmul unit; "
            f"allowed: {', '.join(table)}"
        )
    return table[dtype]


_AMOUNTS = ("matmul_flops", "other_flops", "exp_ops", "hbm_bytes", "l2_bytes", "smem_bytes")


@dataclass(frozen=True)
class Work:
    """What a kernel (or a sequence of kernels) does: operations per unit and bytes per level.

    ``flops`` counts multiply and add as two operations. ``exp_ops`` counts exponentials
    apart from the FLOPs (the SFU evaluates them). ``*_bytes`` are bytes moved across each
    level: ``hbm_bytes`` to and from DRAM, ``l2_bytes`` through L2 (requests that reach L2,
    hits and misses), ``smem_bytes`` through shared memory.
    """

    matmul_flops: ArrayLike = 0.0
    matmul_unit: str = "fp16_tensor"
    other_flops: ArrayLike = 0.0
    other_unit: str = "fp32"
    exp_ops: ArrayLike = 0.0
    hbm_bytes: ArrayLike = 0.0
    l2_bytes: ArrayLike = 0.0
    smem_bytes: ArrayLike = 0.0

    def __post_init__(self):
        for name in _AMOUNTS:
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in "iuf" or value.dtype == bool:
                raise ValueError(f"Work: {name}: {getattr(self, name)!r} is not a number; a count >= 0 is accepted")
            bad = ~np.isfinite(value) | (value < 0)
            if bad.any():
                first = value[bad].flat[0] if value.ndim else value
                raise ValueError(f"Work: {name}: {first.item()!r} is out of range; a finite count >= 0 is accepted")

    @property
    def flops(self):
        return np.add(self.matmul_flops, self.other_flops)

    def level_bytes(self, level: str):
        return {"hbm": self.hbm_bytes, "l2": self.l2_bytes, "smem": self.smem_bytes}[level]

    def __add__(self, other: "Work") -> "Work":
        if (self.matmul_unit, self.other_unit) != (other.matmul_unit, other.other_unit):
            raise ValueError("cannot add Work on different units; time them separately")
        return Work(
            matmul_flops=np.add(self.matmul_flops, other.matmul_flops), matmul_unit=self.matmul_unit,
            other_flops=np.add(self.other_flops, other.other_flops), other_unit=self.other_unit,
            exp_ops=np.add(self.exp_ops, other.exp_ops), hbm_bytes=np.add(self.hbm_bytes, other.hbm_bytes),
            l2_bytes=np.add(self.l2_bytes, other.l2_bytes), smem_bytes=np.add(self.smem_bytes, other.smem_bytes),
        )


@dataclass(frozen=True)
class RooflineTime:
    """Lower-bound time and the binding resource; ``times_s`` has one entry per resource used."""

    time_s: np.ndarray | float
    bound: np.ndarray | str
    times_s: dict[str, np.ndarray | float] = field(default_factory=dict)


def _rate(spec: GPUSpec, resource: str) -> float:
    rate = spec.attainable_rate(resource)
    if rate is None:
        raise ValueError(f"{spec.name} has no rate for {resource!r}; its spec does not give one")
    return rate


def roofline_time(spec: GPUSpec, work: Work, overlap: bool = True) -> RooflineTime:
    """Time of ``work`` on ``spec``: max over resources (``overlap``) or their sum.

    Levels and units with nothing to do are left out; a level or unit with work but no
    rate in the spec (L2 bandwidth on some parts) raises. The result has the broadcast
    shape of all the work's amounts, whatever their values: an all-zero array amount
    contributes no time, but its shape is kept (with no work at all: zeros, bound ``"none"``).
    """
    shape = np.broadcast_shapes(*(np.shape(a) for a in (
        work.matmul_flops, work.other_flops, work.exp_ops, work.hbm_bytes, work.l2_bytes, work.smem_bytes)))
    amounts: dict[str, ArrayLike] = {}
    for level in MEMORY_LEVELS:
        b = work.level_bytes(level)
        if np.any(b):
            amounts[level] = b
    times: dict[str, np.ndarray] = {}
    for level, b in amounts.items():
        times[level] = np.asarray(b, dtype=float) / _rate(spec, level)
    # Matmul and other FLOPs on the same unit share it.
    for unit, flops in ((work.matmul_unit, work.matmul_flops), (work.other_unit, work.other_flops)):
        if not np.any(flops):
            continue
        t = np.asarray(flops, dtype=float) / _rate(spec, unit)
        times[unit] = times[unit] + t if unit in times else t
    if np.any(work.exp_ops):
        if spec.sfu_exp_per_s is None:
            raise ValueError(f"{spec.name} has no SFU exp rate; its spec does not give one")
        times["sfu_exp"] = np.asarray(work.exp_ops, dtype=float) / _rate(spec, "sfu_exp")
    if not times:
        if shape == ():
            return RooflineTime(time_s=0.0, bound="none", times_s={})
        return RooflineTime(time_s=np.zeros(shape), bound=np.full(shape, "none"), times_s={})
    names = list(times)
    stacked = np.stack([np.broadcast_to(times[n], shape) for n in names])  # (resources, *shape)
    total = stacked.max(axis=0) if overlap else stacked.sum(axis=0)
    bound = np.asarray(names, dtype=object)[stacked.argmax(axis=0)]
    if np.ndim(total) == 0:
        return RooflineTime(time_s=float(total), bound=str(bound), times_s={n: float(times[n]) for n in names})
    return RooflineTime(time_s=total, bound=bound.astype(str), times_s=times)


def arithmetic_intensity(flops: ArrayLike, bytes_moved: ArrayLike):
    """FLOPs per byte (Williams et al. 2009, "operational intensity")."""
    return np.divide(np.asarray(flops, dtype=float), bytes_moved)


def ridge_point(spec: GPUSpec, unit: str = "fp32", level: str = "hbm") -> float:
    """Intensity (FLOP/B) where the compute roof of ``unit`` meets the bandwidth roof of ``level``."""
    return _rate(spec, unit) / _rate(spec, level)


def attainable_flops_per_s(spec: GPUSpec, intensity: ArrayLike, unit: str = "fp32", level: str = "hbm"):
    """The roofline: min(compute roof, intensity × bandwidth)."""
    return np.minimum(_rate(spec, unit), np.asarray(intensity, dtype=float) * _rate(spec, level))


def level_report(spec: GPUSpec, work: Work) -> dict[str, dict[str, float]]:
    """For each memory level with bytes: intensity against the work's matmul unit, the ridge
    point, the attainable FLOP/s, and whether that level or the unit binds (scalars only)."""
    out: dict[str, dict[str, float]] = {}
    unit = work.matmul_unit if np.any(work.matmul_flops) else work.other_unit
    for level in MEMORY_LEVELS:
        b = float(work.level_bytes(level))
        if b == 0 or spec.bandwidth_Bps(level) is None:
            continue
        ai = float(work.flops) / b
        ridge = ridge_point(spec, unit, level)
        out[level] = {
            "intensity_flop_per_B": ai,
            "ridge_flop_per_B": ridge,
            "attainable_flops_per_s": float(attainable_flops_per_s(spec, ai, unit, level)),
            "bound": "memory" if ai < ridge else "compute",
        }
    return out


# Building blocks for common operations. Byte counts are the fewest that must cross HBM:
# each input read once, each output written once.


def matmul_work(m: ArrayLike, n: ArrayLike, k: ArrayLike, dtype: str = "fp32", bytes_per_element: float | None = None,
                tensor_cores: bool = True, count_output: bool = True) -> Work:
    """C[m,n] = A[m,k] @ B[k,n]: 2mnk FLOPs; A and B read once, C written once.

    ``count_output=False`` counts only the inputs, as the seed lecture's worked example
    does: two 100×100 FP32 matrices, 2·100³ = 2·10⁶ FLOP over 80 KB = 25 FLOP/B. (The
    lecture writes "2 × 100³ = 20 million" and so 250 FLOP/B, a factor-of-ten slip; either
    value is above an A100's FP32 ridge point, so its conclusion, compute-bound, stands.)
    """
    from hardware_specs.dtypes import dtype_bytes

    e = dtype_bytes(dtype) if bytes_per_element is None else bytes_per_element
    m, n, k = (np.asarray(x, dtype=float) for x in (m, n, k))
    elements = m * k + k * n + (m * n if count_output else 0)
    return Work(matmul_flops=2 * m * n * k, matmul_unit=matmul_unit(dtype, tensor_cores), hbm_bytes=elements * e)


def elementwise_work(n_elements: ArrayLike, flops_per_element: float = 1.0, dtype: str = "fp32",
                     reads_per_element: int = 1, writes_per_element: int = 1, exp_per_element: float = 0.0) -> Work:
    """An elementwise kernel on the SIMT lanes (scale, add, mask, dropout, ...).

    The seed lecture's matrix scaling (a 100×100 FP32 matrix × 2, reads counted, the write
    not) is ``elementwise_work(10_000, writes_per_element=0)``: 10⁴ FLOP / 40 KB = 0.25 FLOP/B.
    """
    from hardware_specs.dtypes import dtype_bytes

    n = np.asarray(n_elements, dtype=float)
    return Work(
        other_flops=n * flops_per_element, exp_ops=n * exp_per_element,
        hbm_bytes=n * dtype_bytes(dtype) * (reads_per_element + writes_per_element),
    )
