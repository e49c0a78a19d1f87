"""Which timing parameters time an implementation's kernels on a spec, and on what basis.

``timing_basis(spec)`` finds them (hardware_specs/implementations.py's three bases: measured,
scaled from a calibrated GPU of the same architecture, per-architecture defaults);
``kernel_params(basis, impl, role, family)`` gives one kernel's ``TimingParams`` and
``call_overhead_s`` the call's host cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hardware_specs.implementations import GPU_PARAMETERS, architecture_key, defaults
from simulators.timing import TimingParams

# Warps per SM an instruction family needs in flight for its full tensor rate (term 3 of timing.py):
# mma.sync is synchronous per warp, so an SM sub-partition needs two warps' MMAs in flight to cover
# one's operand loads (8 a SM); wgmma is asynchronous and one warpgroup (4 warps) keeps the SM's
# tensor cores issuing. Assumptions stated, not fitted: they shape only the tails of small grids.
WARPS_TO_SATURATE = {"mma.sync": 8.0, "wgmma": 4.0, "simt": None}


@dataclass(frozen=True)
class Basis:
    name: str  # "measured" | "scaled from NAME" | "defaults for ARCH"
    values: dict  # (impl or "gpu", parameter) -> value
    tensor_ratio: float = 1.0  # attained fraction of the datasheet peak carried over from the measured GPU
    fp32_ratio: float = 1.0
    memory_ratio: float = 1.0


def _ratio(spec, key: str) -> float:
    m = spec.measured.get(key)
    if m is None or not m.value_datasheet:
        return 1.0
    value = spec.peak_flops_per_s[key.split(".", 1)[1]] if key.startswith("peak") else getattr(spec, key)
    return value / m.value_datasheet


def _section_values(section) -> dict:
    vals = {("gpu", k): v.value for k, v in section.gpu.items()}
    for impl, params in section.impls.items():
        vals.update({(impl, k): v.value for k, v in params.items()})
    return vals


@lru_cache(maxsize=64)
def _calibrated_by_arch() -> dict[str, str]:
    from hardware_specs.loader import list_calibrated, load_gpu

    out = {}
    for name in list_calibrated():
        spec = load_gpu(name)
        if spec.implementations is not None:
            out.setdefault(architecture_key(spec), name)
    return out


def timing_basis(spec) -> Basis:
    if spec.implementations is not None:
        return Basis("measured", _section_values(spec.implementations))
    arch = architecture_key(spec)
    donor = _calibrated_by_arch().get(arch)
    if donor is not None:
        from hardware_specs.loader import load_gpu

        other = load_gpu(donor)
        return Basis(f"scaled from {donor}", _section_values(other.implementations),
                     tensor_ratio=_ratio(other, "peak_flops_per_s.bf16_tensor"),
                     fp32_ratio=_ratio(other, "peak_flops_per_s.fp32"), memory_ratio=_ratio(other, "hbm_bandwidth_Bps"))
    table = defaults()
    entry = table.get(arch, table["default"])
    vals = {("gpu", k): v for k, v in entry["gpu"].items()}
    for impl, family in (("torch-flash", "mma.sync"), ("torch-efficient", "mma.sync"), ("torch-cudnn", "wgmma"),
                         ("torch-eager", "wgmma"), ("torch-math", "simt")):
        eff = entry["family_efficiency"][family]
        vals.update({(impl, "fwd_efficiency"): eff, (impl, "bwd_efficiency"): eff, (impl, "overlap"): 0.0,
                     (impl, "host_fwd_s"): entry["host_fwd_s"], (impl, "host_fwd_bwd_s"): entry["host_fwd_bwd_s"]})
    return Basis(f"defaults for {arch if arch in table else 'default'}", vals)


def _get(basis: Basis, impl: str, name: str) -> float:
    key = ("gpu", name) if name in GPU_PARAMETERS else (impl, name)
    if key not in basis.values:
        raise KeyError(f"no timing parameter {name!r} for {impl} ({basis.name})")
    return float(basis.values[key])


def kernel_params(basis: Basis, impl: str, role: str, family: str, overrides: dict | None = None,
                  variant: str | None = None) -> TimingParams:
    """TimingParams of one kernel of ``impl`` with ``role`` (build.kernels) and instruction ``family``;
    ``variant`` (``d<bound>``): the fwd or bwd kernel's tile variant where its efficiency is fitted per variant
    (a basis without that parameter, e.g. the per-architecture defaults, uses the implementation's one)."""
    v = dict(overrides or {})

    def has(name):
        return name in v or (impl, name) in basis.values

    def get(name):
        if name in ("fwd_efficiency", "bwd_efficiency") and variant is not None and has(f"{name}_{variant}"):
            name = f"{name}_{variant}"
        return v[name] if name in v else _get(basis, impl, name)

    def optional(name):  # a term a basis may lack (an older fit, the per-architecture defaults): 0, no term
        try:
            return get(name)
        except KeyError:
            return 0.0

    common = dict(dram_latency_s=get("dram_latency_s"), l2_latency_s=get("l2_latency_s"),
                  kernel_fixed_s=get("kernel_fixed_s"), launch_s=0.0)
    ratio = basis.fp32_ratio if family == "simt" else basis.tensor_ratio
    if role in ("fwd", "bwd", "decode"):
        eff = get("bwd_efficiency" if role == "bwd" else "fwd_efficiency")
        # a decode kernel of its own has its own block latency where the basis has it, else the forward's
        fixed = {"fwd": "block_fixed_s", "bwd": "bwd_block_fixed_s", "decode": "decode_block_fixed_s"}[role]
        if role == "decode" and not has(fixed):
            fixed = "block_fixed_s"
        return TimingParams(tensor_efficiency=eff * ratio, warps_to_saturate=WARPS_TO_SATURATE.get(family),
                            serial_compute=True, overlap=get("overlap"), memory_efficiency=basis.memory_ratio,
                            smem_operands=family != "wgmma", block_fixed_s=optional(fixed), **common)
    if role.startswith("gemv_"):  # bandwidth-bound on its bytes; gemv.py adds its per-row bound
        return TimingParams(memory_efficiency=basis.memory_ratio, **common)
    if role.startswith("gemm_"):
        eff = get("fwd_efficiency" if role == "gemm_fwd" else "bwd_efficiency")
        return TimingParams(tensor_efficiency=eff * ratio, memory_efficiency=basis.memory_ratio, **common)
    # helper, elementwise and row-wise kernels: bandwidth-bound, no tensor work
    share = {"broadcast": "broadcast_efficiency", "rowwise": "rowwise_efficiency",
             "rowblock": "rowblock_efficiency"}.get(role.split("_")[0], "elementwise_efficiency")
    return TimingParams(memory_efficiency=get(share) * basis.memory_ratio, **common)


def gemv_row_s(basis: Basis, overrides: dict | None = None) -> float:
    v = overrides or {}
    return float(v["gemv_row_s"]) if "gemv_row_s" in v else _get(basis, "gpu", "gemv_row_s")


def call_overhead_s(basis: Basis, impl: str, pass_: str, overrides: dict | None = None) -> float:
    name = "host_fwd_s" if pass_ == "fwd" else "host_fwd_bwd_s"
    v = overrides or {}
    return float(v[name]) if name in v else _get(basis, impl, name)
