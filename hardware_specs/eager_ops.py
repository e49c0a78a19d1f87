"""Eager PyTorch's kernel families on one GPU: sustained bandwidth per family, latency, host time per op.

A file ``hardware_specs/eager-ops/<spec name>.yaml`` holds one ``EagerOps`` (kept out of
``calibrated/``, which holds GPU specs only):
for each kernel family of ``simulators.kernel_graph.KERNEL_CLASSES`` the DRAM bandwidth (B/s)
that family's kernels sustain, counting the tensor-level bytes the simulator counts, and a time
per output element (s; a reduction finishing a row, a comparison writing a mask element): a
kernel takes the longer of the two (two ceilings); and
what an eager call costs over its kernels' queued time: ``call_overhead_s`` plus
``gap_per_kernel_s`` per kernel (s; fitted from CUDA-event times of whole calls with and
without the queue filled first) (a
broadcast subtraction moves its bytes at well under copy speed: TensorIterator's
non-vectorized path; a reduction over a 64-element last dimension at a quarter of it), a
per-kernel latency (s: ramp-up and tail of a launch, what a kernel of no bytes takes) and the
host's time per eager op (s: dispatch and launch). Each is fitted by
``python3 -m costmodel.validation.approx_fit`` from Nsight Compute kernel durations (``measured`` says
how, on which GPU and when).

A GPU with no such file gets the nearest fit scaled: every family's bandwidth times the
GPU's HBM bandwidth over the fitted GPU's (the families keep their fraction of the copy
bandwidth), latency and host time unchanged. That is an assumption, stated in ``assumed``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

FITS = Path(__file__).resolve().parent / "eager-ops"


class FamilyFit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bandwidth_Bps: float = Field(gt=0)  # tensor-level bytes streamed per second
    per_output_s: float = Field(default=0.0, ge=0)  # time per output element (a reduction's row), s
    kernels: int = Field(ge=0)  # kernels of the fit grid in this family
    median_abs_err: float | None = None  # |predicted / measured - 1| of their durations, on the fit grid


class EagerOpsFit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(min_length=1)
    date: _dt.date
    gpu: str
    torch: str
    source_file: str


class EagerOps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str  # the GPUSpec name the fit belongs to
    latency_s: float = Field(ge=0)  # GPU time of a kernel that moves nothing
    host_per_op_s: float = Field(ge=0)  # host time per eager op (dispatch + launch)
    call_overhead_s: float = Field(default=0.0, ge=0)  # an eager call's time over its queued GPU time, fixed part
    gap_per_kernel_s: float = Field(default=0.0, ge=0)  # ... and per kernel launched
    reference_hbm_Bps: float = Field(gt=0)  # that spec's HBM bandwidth: the scale for other GPUs
    families: dict[str, FamilyFit]
    measured: EagerOpsFit | None = None
    assumed: str | None = None


def _fits() -> list[EagerOps]:
    return [EagerOps.model_validate(yaml.safe_load(p.read_text())) for p in sorted(FITS.glob("*.yaml"))]


def eager_ops(spec) -> EagerOps:
    """The fit made on ``spec``, or the first fit scaled to ``spec``'s HBM bandwidth (module docstring)."""
    fits = _fits()
    if not fits:
        raise ValueError(f"gpu: no eager-ops fit in {FITS}; run python3 -m costmodel.validation.approx_fit")
    for f in fits:
        if f.spec == spec.name:
            return f
    base = fits[0]
    scale = spec.hbm_bandwidth_Bps / base.reference_hbm_Bps
    return base.model_copy(update={
        "spec": spec.name, "reference_hbm_Bps": spec.hbm_bandwidth_Bps,
        "families": {k: v.model_copy(update={"bandwidth_Bps": v.bandwidth_Bps * scale, "median_abs_err": None})
                     for k, v in base.families.items()},
        "assumed": f"not measured on {spec.name}: {base.spec}'s fit with every bandwidth x {scale:.3f} "
                   f"(HBM {spec.hbm_bandwidth_Bps:.3g} / {base.reference_hbm_Bps:.3g} B/s), same latency and host time"})


__all__ = ["EagerOps", "EagerOpsFit", "FamilyFit", "eager_ops"]
