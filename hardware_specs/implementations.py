"""Fitted timing parameters of the attention implementations on one GPU: the ``implementations:``
section of a calibrated spec, and the per-architecture defaults for a GPU never measured.

Every parameter has a physical meaning and a unit (``PARAMETERS``), a value, and ``measured:``
provenance (method, GPU, date) or, for a default, a ``source``. ``spread`` is the relative
difference between the values fitted on two calibration runs of the same grid minutes apart.

Basis of a spec's parameters (``timing_basis``):

* ``measured``: the spec carries its own section (fitted on that GPU);
* ``scaled from NAME``: none of its own, but a calibrated spec of the same architecture exists:
  its section is used, with efficiencies re-expressed against this spec's datasheet peaks by the
  ratio (calibrated peak / datasheet peak) of the measured GPU (H100 from the H200: same chip, so
  the same attained fraction of the datasheet; latencies and host costs as measured);
* ``defaults for ARCH``: datasheet peaks and ``timing_defaults.yaml``'s per-architecture values.
"""

from __future__ import annotations

import datetime as _dt
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field

# name -> (unit, meaning). GPU-wide ones under "gpu", per implementation under its name.
PARAMETERS = {
    "dram_latency_s": ("s", "loaded DRAM latency an SM's loads see (Little's law: in flight / latency = rate)"),
    "l2_latency_s": ("s", "L2 hit latency an SM's loads see"),
    "kernel_fixed_s": ("s", "GPU time of one launch beyond its work: first-wave ramp-up and last-wave drain"),
    "elementwise_efficiency": ("1", "share of the DRAM bandwidth torch's vectorized elementwise kernels "
                                    "(and the fused implementations' small helper kernels) attain"),
    "broadcast_efficiency": ("1", "share of the DRAM bandwidth an elementwise kernel with a broadcast operand "
                                  "attains (TensorIterator's non-vectorized path: masked_fill, where)"),
    "rowwise_efficiency": ("1", "share of the DRAM bandwidth torch's warp softmax (rows of <= 1024 elements, "
                                "forward and backward) attains"),
    "rowblock_efficiency": ("1", "share of the DRAM bandwidth torch's block softmax (longer rows: "
                                 "cunn_SoftMaxForward / Backward) attains"),
    "gemv_row_s": ("s", "GPU time per key row of torch's fp32 batched M = 1 product (cuBLAS's SIMT GEMV in the math "
                        "backend's decode: a length-d dot product of Q K^T, a d-wide accumulate of P V), spread over "
                        "the SMs, where the row's fixed instruction work, not DRAM, binds"),
    "overlap": ("1", "share of the shorter of (MMA, exp + softmax) a fused kernel hides under the longer "
                     "(0: the same warps do one after the other; 1: ping-pong warpgroups hide it all)"),
    "fwd_efficiency": ("1", "share of the matmul unit's peak the forward kernel's main loop attains "
                            "(MMA issue rate of its instruction family, exp and softmax in the same warps)"),
    "bwd_efficiency": ("1", "the same for the backward kernel"),
    **{f"bwd_efficiency_d{b}": ("1", f"share of the matmul unit's peak the backward kernel variant for head_dim "
                                     f"<= {b} attains in its main loop") for b in (64, 128, 256)},
    # one share per kernel variant where the catalog's forward says efficiency_by_tile (its head_dim bounds)
    **{f"fwd_efficiency_d{b}": ("1", f"share of the matmul unit's peak the forward kernel variant for head_dim "
                                     f"<= {b} (its own tile and warp count) attains in its main loop") for b in (64, 128, 256)},
    "block_fixed_s": ("s", "time a fused forward kernel's block spends outside its main loop that co-resident blocks do not "
                           "hide (loading its Q tile and first K/V tiles, writing O and the row statistics), per "
                           "round of blocks on the busiest SM"),
    "bwd_block_fixed_s": ("s", "the same for the backward kernel's block (loading its K and V tiles, writing dK and "
                               "dV), per round of blocks on the busiest SM"),
    "decode_block_fixed_s": ("s", "the same for a decode kernel of its own (FA2's split-KV kernel, cuDNN's sm80 decode "
                                  "kernel): its block's K/V come from DRAM, not from an L2 shared with the head's "
                                  "other query blocks, and it writes fp32 partials for the combine; per round"),
    "host_fwd_s": ("s", "host time of one forward call not hidden behind the GPU: dispatch, checks, launches"),
    "host_fwd_bwd_s": ("s", "host time of one forward + backward call (autograd included)"),
}
GPU_PARAMETERS = ("dram_latency_s", "l2_latency_s", "kernel_fixed_s", "elementwise_efficiency",
                  "broadcast_efficiency", "rowwise_efficiency", "rowblock_efficiency", "gemv_row_s")
IMPL_PARAMETERS = ("fwd_efficiency", "fwd_efficiency_d64", "fwd_efficiency_d128", "fwd_efficiency_d256",
                   "bwd_efficiency", "bwd_efficiency_d64", "bwd_efficiency_d128", "bwd_efficiency_d256", "overlap",
                   "block_fixed_s", "bwd_block_fixed_s", "decode_block_fixed_s", "host_fwd_s", "host_fwd_bwd_s")


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field(min_length=1)
    gpu: str
    date: _dt.date


class Fitted(BaseModel):
    """One parameter: value, unit, meaning, how it was obtained."""

    model_config = ConfigDict(extra="forbid")

    value: float
    unit: str
    meaning: str
    measured: Provenance | None = None
    source: str | None = None
    spread: float | None = None  # |fit 1 - fit 2| / mean over two calibration runs

    def model_post_init(self, _ctx) -> None:
        if self.measured is None and not (self.source or "").strip():
            raise ValueError("a fitted parameter needs measured: provenance or a source")


class ImplementationsSection(BaseModel):
    """The ``implementations:`` section: GPU-wide timing parameters and per-implementation ones."""

    model_config = ConfigDict(extra="forbid")

    gpu: dict[str, Fitted]
    impls: dict[str, dict[str, Fitted]]
    raw: str | None = None  # where the raw samples are (path in the repository)
    fit: dict | None = None  # fit summary: grid, residuals

    def value(self, impl: str | None, name: str) -> float | None:
        if impl is None or name in GPU_PARAMETERS:
            p = self.gpu.get(name)
        else:
            p = self.impls.get(impl, {}).get(name)
        return None if p is None else p.value


def defaults() -> dict:
    """timing_defaults.yaml: per architecture, the parameters used where nothing was measured."""
    return yaml.safe_load(resources.files("hardware_specs").joinpath("timing_defaults.yaml").read_text())


def architecture_key(spec) -> str:
    return spec.architecture.split()[0].lower()
