"""Fitting the implementations' timing parameters on the calibration grid.

Loss: the sum over calibration measurements of log(predicted / measured)^2, so that a 10 % miss
counts alike at 20 us and at 20 ms. Minimised by coordinate descent in log-parameter space, a
golden-section search per parameter between physical bounds (``BOUNDS``), a few sweeps; the
per-implementation parameters touch only their implementation's measurements, so each is searched
on those alone. Deterministic and numpy-free: the same samples give the same parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hardware_specs.implementations import GPU_PARAMETERS, IMPL_PARAMETERS
from simulators.config import AttentionConfig, make_config
from simulators.implementations import run
from simulators.implementations.params import Basis

# (low, high) of each parameter: the physically possible range, the search stays inside it
BOUNDS = {"dram_latency_s": (2e-7, 5e-6), "l2_latency_s": (5e-8, 2e-6), "kernel_fixed_s": (5e-7, 2e-5),
          "elementwise_efficiency": (0.2, 1.0), "broadcast_efficiency": (0.05, 1.0), "rowwise_efficiency": (0.05, 1.0),
          "rowblock_efficiency": (0.05, 1.0), "gemv_row_s": (2e-11, 2e-9), "overlap": (0.01, 1.0), "fwd_efficiency": (0.05, 1.0), "fwd_efficiency_d64": (0.05, 1.0),
          "fwd_efficiency_d128": (0.05, 1.0), "fwd_efficiency_d256": (0.05, 1.0), "bwd_efficiency": (0.05, 1.0),
          "bwd_efficiency_d64": (0.05, 1.0), "bwd_efficiency_d128": (0.05, 1.0), "bwd_efficiency_d256": (0.05, 1.0),
          "block_fixed_s": (1e-8, 2e-5), "bwd_block_fixed_s": (1e-8, 2e-5), "host_fwd_s": (1e-6, 3e-4), "host_fwd_bwd_s": (1e-6, 1e-3),
          "decode_block_fixed_s": (1e-8, 2e-5)}
START = {"dram_latency_s": 8e-7, "l2_latency_s": 3e-7, "kernel_fixed_s": 3e-6, "elementwise_efficiency": 0.8,
         "broadcast_efficiency": 0.5, "rowwise_efficiency": 0.5, "rowblock_efficiency": 0.25, "gemv_row_s": 2e-10, "overlap": 0.1,
         "fwd_efficiency": 0.5, "fwd_efficiency_d64": 0.5, "fwd_efficiency_d128": 0.5, "fwd_efficiency_d256": 0.5,
         "bwd_efficiency": 0.4, "bwd_efficiency_d64": 0.4, "bwd_efficiency_d128": 0.4, "bwd_efficiency_d256": 0.4,
         "block_fixed_s": 5e-7, "bwd_block_fixed_s": 5e-7, "host_fwd_s": 2e-5, "host_fwd_bwd_s": 8e-5,
         "decode_block_fixed_s": 5e-7}
GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass
class Point:
    impl: str
    pass_: str
    cfg: AttentionConfig
    counts: list
    measured_s: float
    gpu_only: bool = False  # measured_s is Nsight Compute's kernel time: no host cost in it


def points(spec, measured, gpu_only: bool = False) -> list[Point]:
    """Each measurement with its implementation's kernels counted once; ``gpu_only``: the measurements
    are records.Profiled (Nsight Compute's summed kernel durations), predicted without the host cost."""
    from costmodel.validation.implementations.records import config_of

    cache: dict = {}
    out = []
    for m in measured:
        key = (m.case.impl, m.case.pass_, m.case.shape)
        if key not in cache:
            cfg = make_config(AttentionConfig, **config_of(m.case))
            cache[key] = (cfg, run.count(spec, m.case.impl, cfg, m.case.pass_))
        cfg, counts = cache[key]
        out.append(Point(m.case.impl, m.case.pass_, cfg, counts, m.gpu_time_s if gpu_only else m.time_s, gpu_only))
    return out


def predict(spec, p: Point, values: dict) -> float:
    basis = Basis("fit", values)
    kernels, overhead = run.time(spec, p.impl, p.counts, p.cfg, p.pass_, basis)
    return sum(k.time_s - k.launch_s for k in kernels) if p.gpu_only else sum(k.time_s for k in kernels) + overhead


def loss(spec, pts: list[Point], values: dict) -> float:
    return sum(math.log(predict(spec, p, values) / p.measured_s) ** 2 for p in pts)


def _golden(f, lo: float, hi: float, iters: int) -> float:
    a, b = math.log(lo), math.log(hi)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(math.exp(d))
    return math.exp((a + b) / 2)


def fit(spec, pts: list[Point], sweeps: int = 3, iters: int = 18, start: dict | None = None,
        fixed: tuple = ()) -> dict:
    """Parameter values {("gpu" | impl, name): value} minimising ``loss`` on ``pts``; ``start``: values to
    begin from ({key: value}, others from START); ``fixed``: keys held at their start. The search of
    each parameter spans its BOUNDS."""
    impls = sorted({p.impl for p in pts})
    values = {("gpu", n): START[n] for n in GPU_PARAMETERS}
    for impl in impls:
        values.update({(impl, n): START[n] for n in IMPL_PARAMETERS})
    values.update({k: v for k, v in (start or {}).items() if k in values})
    by_impl = {i: [p for p in pts if p.impl == i] for i in impls}
    for impl in impls:  # parameters no point of the implementation uses are not fitted, nor written
        for name in IMPL_PARAMETERS:
            if not any(_uses(name, p) for p in by_impl[impl]):
                values.pop((impl, name), None)
    for _ in range(sweeps):
        for impl in impls:
            for name in IMPL_PARAMETERS:
                own = [p for p in by_impl[impl] if _uses(name, p)]
                if not own or (impl, name) in fixed or (impl, name) not in values:
                    continue
                values[(impl, name)] = _golden(lambda x: loss(spec, own, {**values, (impl, name): x}),
                                               *BOUNDS[name], iters)
        for name in GPU_PARAMETERS:
            if ("gpu", name) in fixed:
                continue
            values[("gpu", name)] = _golden(lambda x: loss(spec, pts, {**values, ("gpu", name): x}),
                                            *BOUNDS[name], iters)
    return values


def _uses(name: str, p: Point) -> bool:
    from simulators.implementations import IMPLEMENTATIONS

    if IMPLEMENTATIONS[p.impl].priced_by == "op_models" and not name.startswith("host"):
        return False  # its kernels are priced by the op models' own calibration (ops.py)
    entry = IMPLEMENTATIONS[p.impl]
    if name == "decode_block_fixed_s":
        return any(role == "decode" for _, role in p.counts)
    if name == "block_fixed_s":  # the forward kernel's; a decode kernel of its own has decode_block_fixed_s
        return entry.kind == "fused" and any(role == "fwd" for _, role in p.counts)
    if name == "overlap":
        return entry.kind == "fused"
    if name == "bwd_block_fixed_s":
        return entry.kind == "fused" and p.pass_ != "fwd"
    for pass_name in ("fwd", "bwd"):  # one share, or one per tile variant (run.variant)
        if name.startswith(f"{pass_name}_efficiency"):
            if pass_name == "bwd" and p.pass_ == "fwd":
                return False
            own = run.variant(entry, p.cfg, pass_name)
            return name == f"{pass_name}_efficiency" if own is None else name == f"{pass_name}_efficiency_{own}"
    if name.startswith("host") and p.gpu_only:
        return False
    if name == "host_fwd_bwd_s":
        return p.pass_ != "fwd"
    if name == "host_fwd_s":
        return p.pass_ == "fwd"
    return True


def residuals(spec, pts: list[Point], values: dict) -> list[float]:
    return [predict(spec, p, values) / p.measured_s - 1 for p in pts]
