"""The GPU specification schema: every number with its unit in its name and its source beside it.

A spec file writes each number as a mapping ``{value: ..., source: "..."}``; the loader
keeps the plain number on the model (``spec.hbm_bandwidth_Bps``) and the text in
``spec.sources["hbm_bandwidth_Bps"]``. A number without a source, or with an empty one, is
rejected.

A *calibrated* spec is the same schema with some values replaced by measurements:
``{value: ..., measured: {method: "...", date: "YYYY-MM-DD"}}``. Those carry a
``Measurement`` in ``spec.measured`` and a source that says how they were measured.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hardware_specs.interconnect import GPUInterconnect
from hardware_specs.op_timing import GemmModel, MemoryOpsModel
from hardware_specs.implementations import ImplementationsSection
from hardware_specs.numba_kernels import NumbaKernelsSection

# Compute units whose peak rates a spec may give, in FLOP/s (OP/s for int8), dense
# (no structured sparsity). "fp32" and "fp64" are the SIMT (CUDA-core) rates; the
# "_tensor" units are matrix units (NVIDIA tensor cores, AMD matrix cores).
COMPUTE_UNITS = (
    "fp64",
    "fp64_tensor",
    "fp32",
    "fp16",
    "bf16",
    "tf32_tensor",
    "fp16_tensor",
    "bf16_tensor",
    "fp8_tensor",
    "int8_tensor",
)

# Memory levels of the hierarchical roofline, outermost first.
MEMORY_LEVELS = ("hbm", "l2", "smem")

# Resources the roofline can name as binding: memory levels, compute units and the
# special-function unit that evaluates exp.
RESOURCES = MEMORY_LEVELS + COMPUTE_UNITS + ("sfu_exp",)

# Fields that hold numbers and therefore need a source.
_SOURCED_FIELDS = (
    "sm_count",
    "boost_clock_Hz",
    "fp32_lanes_per_sm",
    "smem_per_sm_bytes",
    "smem_per_block_max_bytes",
    "smem_bytes_per_clk_per_sm",
    "register_file_per_sm_bytes",
    "l2_bytes",
    "l2_bandwidth_Bps",
    "hbm_bytes",
    "hbm_bandwidth_Bps",
    "sfu_exp_per_clk_per_sm",
    "nvlink_bandwidth_Bps",
    "kernel_launch_s",
)


# Integer fields (SMs, bytes) stay below 2**53: exact in float64 and far inside int64.
_COUNT_LIMIT = 2**53


def _no_bool(key: str, value: Any) -> Any:
    """YAML's ``true`` is not a count of SMs: refuse booleans where a number belongs."""
    if isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not a number; a number is accepted")
    return value


class Measurement(BaseModel):
    """How a calibrated value was obtained."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(min_length=1)
    date: _dt.date
    value_datasheet: float | None = None  # the value it replaced, if any


class GPUSpec(BaseModel):
    """One GPU: its resources and the source of every number.

    Attributes are SI with the unit in the name. ``sm_count`` counts NVIDIA SMs or AMD
    compute units; ``fp32_lanes_per_sm`` the FP32 lanes of one of them.
    """

    # allow_inf_nan=False: a bandwidth or a peak of .inf / .nan is a typo, never a spec.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    display_name: str
    vendor: Literal["nvidia", "amd"]
    architecture: str
    # Device names this spec is for (``hardware_specs.device_names``): each entry the words that
    # must all appear in the lower-cased name the driver reports ("h100 pcie").
    device_names: list[str] = Field(default_factory=list)
    sm_count: int = Field(gt=0, lt=_COUNT_LIMIT)
    boost_clock_Hz: float = Field(gt=0)
    fp32_lanes_per_sm: int = Field(gt=0, lt=_COUNT_LIMIT)
    smem_per_sm_bytes: int = Field(gt=0, lt=_COUNT_LIMIT)
    smem_per_block_max_bytes: int = Field(gt=0, lt=_COUNT_LIMIT)
    smem_bytes_per_clk_per_sm: float = Field(gt=0)
    register_file_per_sm_bytes: int = Field(gt=0, lt=_COUNT_LIMIT)
    l2_bytes: int = Field(gt=0, lt=_COUNT_LIMIT)
    l2_bandwidth_Bps: float | None = Field(default=None, gt=0)
    hbm_bytes: int = Field(gt=0, lt=_COUNT_LIMIT)
    hbm_bandwidth_Bps: float = Field(gt=0)
    peak_flops_per_s: dict[str, float]
    sfu_exp_per_clk_per_sm: float | None = Field(default=None, gt=0)
    nvlink_bandwidth_Bps: float | None = Field(default=None, gt=0)
    kernel_launch_s: float = Field(gt=0)
    interconnect: GPUInterconnect | None = None  # NVLink / NVSwitch / PCIe, sourced (hardware_specs/interconnect.py)
    # Achievable fraction of each resource's peak (1.0 when absent). A calibrated spec
    # sets these from measurements; a datasheet spec normally leaves them out.
    efficiency: dict[str, float] = Field(default_factory=dict)
    sources: dict[str, str]
    measured: dict[str, Measurement] = Field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    gemm: GemmModel | None = None  # fitted cuBLAS GEMM model (hardware_specs/op_timing.py)
    memory_ops: MemoryOpsModel | None = None  # fitted memory-bound-op curve and launch costs
    implementations: ImplementationsSection | None = None  # fitted attention timing (hardware_specs/implementations.py)
    numba_kernels: NumbaKernelsSection | None = None  # our kernels' fitted timing (hardware_specs/numba_kernels.py)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _split_sourced_values(cls, data: Any) -> Any:
        """Turn ``{value, source}`` / ``{value, measured}`` mappings into plain numbers."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        sources = dict(data.get("sources") or {})
        measured = dict(data.get("measured") or {})

        def split(key: str, raw: Any) -> Any:
            if not isinstance(raw, dict):
                return raw
            unknown = set(raw) - {"value", "source", "measured"}
            if unknown or "value" not in raw:
                raise ValueError(
                    f"{key}: expected a number or a mapping {{value, source}} / {{value, measured}}, "
                    f"got keys {sorted(raw)}"
                )
            if "measured" in raw:
                m = Measurement.model_validate(raw["measured"])
                measured[key] = m
                sources[key] = raw.get("source") or f"measured {m.date}: {m.method}"
            elif "source" in raw:
                sources[key] = raw["source"]
            return raw["value"]

        for key in _SOURCED_FIELDS:
            if key in data:
                data[key] = _no_bool(key, split(key, data[key]))
        peaks = data.get("peak_flops_per_s")
        if isinstance(peaks, dict):
            data["peak_flops_per_s"] = {
                unit: _no_bool(f"peak_flops_per_s.{unit}", split(f"peak_flops_per_s.{unit}", raw))
                for unit, raw in peaks.items()
            }
        data["sources"] = sources
        data["measured"] = measured
        return data

    @field_validator("peak_flops_per_s")
    @classmethod
    def _known_units(cls, peaks: dict[str, float]) -> dict[str, float]:
        for unit, rate in peaks.items():
            if unit not in COMPUTE_UNITS:
                raise ValueError(f"peak_flops_per_s: unknown unit {unit!r}; allowed: {', '.join(COMPUTE_UNITS)}")
            if not rate > 0:
                raise ValueError(f"peak_flops_per_s.{unit}: must be > 0, got {rate!r}")
        if "fp32" not in peaks:
            raise ValueError("peak_flops_per_s: the fp32 (SIMT) rate is required")
        return peaks

    @field_validator("efficiency")
    @classmethod
    def _efficiency_range(cls, eff: dict[str, float]) -> dict[str, float]:
        for resource, frac in eff.items():
            if resource not in RESOURCES:
                raise ValueError(f"efficiency: unknown resource {resource!r}; allowed: {', '.join(RESOURCES)}")
            if not 0 < frac <= 1:
                raise ValueError(f"efficiency.{resource}: must be in (0, 1], got {frac!r}")
        return eff

    @model_validator(mode="after")
    def _every_number_has_a_source(self) -> "GPUSpec":
        def unsourced(key: str) -> bool:  # a blank source says no more than a missing one
            return not str(self.sources.get(key) or "").strip()

        missing = [k for k in _SOURCED_FIELDS if getattr(self, k) is not None and unsourced(k)]
        missing += [f"peak_flops_per_s.{u}" for u in self.peak_flops_per_s if unsourced(f"peak_flops_per_s.{u}")]
        if missing:
            raise ValueError(f"{self.name}: these numbers have no source: {', '.join(missing)}")
        if self.smem_per_block_max_bytes > self.smem_per_sm_bytes:
            raise ValueError(
                f"smem_per_block_max_bytes ({self.smem_per_block_max_bytes}) exceeds "
                f"smem_per_sm_bytes ({self.smem_per_sm_bytes})"
            )
        return self

    # Derived peaks. Each is a product of sourced numbers; the derivation is the source.

    @property
    def smem_bandwidth_Bps(self) -> float:
        """Aggregate shared-memory bandwidth: bytes/clk/SM × SMs × boost clock.

        NVIDIA SMs serve 32 banks × 4 B per clock (CUDA C++ Programming Guide, "Shared
        Memory" under each compute capability); for an A100 this gives 19.5 TB/s, the
        "SRAM 19 TB/s" of the FlashAttention paper's Figure 1.
        """
        return self.smem_bytes_per_clk_per_sm * self.sm_count * self.boost_clock_Hz

    @property
    def sfu_exp_per_s(self) -> float | None:
        """exp evaluations per second on the special-function units (SFU results/clk/SM × SMs × clock)."""
        if self.sfu_exp_per_clk_per_sm is None:
            return None
        return self.sfu_exp_per_clk_per_sm * self.sm_count * self.boost_clock_Hz

    def bandwidth_Bps(self, level: str) -> float | None:
        """Peak bandwidth of a memory level (before efficiency), or None where unknown."""
        if level == "hbm":
            return self.hbm_bandwidth_Bps
        if level == "l2":
            return self.l2_bandwidth_Bps
        if level == "smem":
            return self.smem_bandwidth_Bps
        raise ValueError(f"level: unknown memory level {level!r}; allowed: {', '.join(MEMORY_LEVELS)}")

    def peak_rate(self, resource: str) -> float | None:
        """Peak rate of any resource: B/s for memory levels, FLOP/s for units, exp/s for the SFU."""
        if resource in MEMORY_LEVELS:
            return self.bandwidth_Bps(resource)
        if resource == "sfu_exp":
            return self.sfu_exp_per_s
        if resource in COMPUTE_UNITS:
            return self.peak_flops_per_s.get(resource)
        raise ValueError(f"resource: unknown {resource!r}; allowed: {', '.join(RESOURCES)}")

    def attainable_rate(self, resource: str) -> float | None:
        """Peak rate × efficiency (the achievable fraction, 1.0 unless a calibration sets it)."""
        peak = self.peak_rate(resource)
        return None if peak is None else peak * self.efficiency.get(resource, 1.0)
