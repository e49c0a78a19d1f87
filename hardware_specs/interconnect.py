"""How GPUs talk to each other, as data: a GPU's links, a node's fabric, and a cluster of nodes.

Three schemas, each number with its source beside it (``{value, source}`` in YAML, as in a
GPU spec; the loader keeps the number on the model and the text in ``sources``):

- ``GPUInterconnect``: one GPU's NVLink generation, link count and bandwidth, the NVSwitch
  domain it sits in and its PCIe generation. It is the optional ``interconnect`` field of
  ``GPUSpec``.
- ``Fabric``: one level of a cluster's network (intra-node NVLink/NVSwitch, inter-node
  InfiniBand/RoCE): the bandwidth one GPU has into it, per direction, the per-step latency of a
  collective over it, and the achievable fraction of that bandwidth per collective.
- ``ClusterSpec``: nodes, GPUs per node, the GPU kind (a bundled GPU spec by name), the
  intra- and inter-node fabrics, NICs per node, and power for energy estimates.

Bandwidths are **per direction** (what nccl-tests' bus bandwidth is compared against: "The
measurement is of a unidirectional bandwidth", nccl-tests doc/PERFORMANCE.md). NVIDIA's
datasheets quote NVLink as the bidirectional total (A100 "600 GB/s" = 12 links x 25 GB/s each
way x 2); those totals are halved here and the halving is written in each source.

A *measured overlay* (issue 19: ``ioaware`` fits it from an nccl-tests-style sweep) replaces a
fabric's ``latency_s`` and ``efficiency`` per collective with values that carry ``measured:``
provenance (method, GPU, date); see ``apply_overlay`` in ``hardware_specs/cluster.py``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


class Measured(BaseModel):
    """How a fitted interconnect term was obtained (``measured:`` provenance)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    date: _dt.date
    value_datasheet: float | None = None  # the value it replaced, if any


def split_sourced(data: Any, fields: tuple[str, ...]) -> Any:
    """``{value, source}`` / ``{value, measured}`` mappings -> plain numbers plus ``sources`` / ``measured``.

    The same convention as ``GPUSpec``; a number in ``fields`` without a non-blank source is
    rejected by ``check_sourced``.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    sources = dict(data.get("sources") or {})
    measured = dict(data.get("measured") or {})
    for key in fields:
        raw = data.get(key)
        if not isinstance(raw, dict):
            continue
        unknown = set(raw) - {"value", "source", "measured"}
        if unknown or "value" not in raw:
            raise ValueError(f"{key}: expected a number or a mapping {{value, source}} / {{value, measured}}, "
                             f"got keys {sorted(raw)}")
        if "measured" in raw:
            m = Measured.model_validate(raw["measured"])
            measured[key] = m
            sources[key] = raw.get("source") or f"measured {m.date} on {m.gpu}: {m.method}"
        elif "source" in raw:
            sources[key] = raw["source"]
        data[key] = raw["value"]
    data["sources"] = sources
    data["measured"] = measured
    return data


def check_sourced(model: BaseModel, fields: tuple[str, ...], where: str) -> None:
    given = model.model_fields_set  # a default (base_latency_s = 0) is not a number anyone stated
    missing = [k for k in fields
               if k in given and getattr(model, k) is not None and not str(model.sources.get(k) or "").strip()]
    if missing:
        raise ValueError(f"{where}: these numbers have no source: {', '.join(missing)}")


_GPU_FIELDS = ("nvlink_generation", "nvlink_links", "nvlink_bandwidth_per_direction_Bps", "nvswitch_domain_gpus",
               "pcie_generation", "pcie_bandwidth_per_direction_Bps")


class GPUInterconnect(BaseModel):
    """One GPU's links to its peers and host (``GPUSpec.interconnect``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nvlink_generation: int | None = Field(default=None, gt=0)
    nvlink_links: int | None = Field(default=None, gt=0)
    nvlink_bandwidth_per_direction_Bps: float | None = Field(default=None, gt=0)  # all links together, one way
    nvswitch_domain_gpus: int | None = Field(default=None, gt=0)  # GPUs one NVSwitch fabric joins all-to-all
    pcie_generation: int = Field(gt=0)
    pcie_bandwidth_per_direction_Bps: float = Field(gt=0)  # x16, one way
    sources: dict[str, str] = Field(default_factory=dict)
    measured: dict[str, Measured] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        return split_sourced(data, _GPU_FIELDS)

    @model_validator(mode="after")
    def _sourced(self) -> "GPUInterconnect":
        check_sourced(self, _GPU_FIELDS, "interconnect")
        return self


_FABRIC_FIELDS = ("bandwidth_per_gpu_Bps", "latency_s", "base_latency_s", "ll_latency_s", "ll_base_latency_s",
                  "ll_bandwidth_fraction")


class Fabric(BaseModel):
    """One network level as a collective sees it: per-GPU bandwidth each way, per-step latency.

    ``efficiency[collective]`` is the achievable fraction of ``bandwidth_per_gpu_Bps`` (1.0, the
    datasheet peak, unless a source or a measured overlay says otherwise); ``latency_s`` is the
    alpha of one ring step over this fabric and ``base_latency_s`` the fixed cost of launching a
    collective, both NCCL's tuning-model constants unless measured (``latency_by_collective``
    overrides ``latency_s`` per collective, as a measured overlay writes it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["nvlink", "infiniband", "roce", "pcie"]
    bandwidth_per_gpu_Bps: float = Field(gt=0)
    latency_s: float = Field(ge=0)
    base_latency_s: float = Field(default=0.0, ge=0)
    efficiency: dict[str, float] = Field(default_factory=dict)
    latency_by_collective: dict[str, float] = Field(default_factory=dict)
    # NCCL's low-latency protocol (LL: 8-byte stores with an inline flag), which it picks for small messages:
    # its own per-step and base latency and the share of the link bandwidth it reaches
    ll_latency_s: float | None = Field(default=None, ge=0)
    ll_base_latency_s: float | None = Field(default=None, ge=0)
    ll_bandwidth_fraction: float | None = Field(default=None, gt=0, le=1)
    nvls: bool = False  # NVLink SHARP (in-switch reduction): NVSwitch gen 3 (H100) and later
    sources: dict[str, str] = Field(default_factory=dict)
    measured: dict[str, Measured] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # efficiency and per-collective latency are mappings of sourced numbers, keyed "efficiency.<collective>"
        flat = {}
        for group in ("efficiency", "latency_by_collective"):
            for coll, raw in dict(data.pop(group, None) or {}).items():
                flat[f"{group}.{coll}"] = raw
        data.update(flat)
        data = split_sourced(data, _FABRIC_FIELDS + tuple(flat))
        for group in ("efficiency", "latency_by_collective"):
            data[group] = {k.split(".", 1)[1]: data.pop(k) for k in list(data) if k.startswith(group + ".")}
        return data

    @model_validator(mode="after")
    def _valid(self) -> "Fabric":
        check_sourced(self, _FABRIC_FIELDS, f"fabric {self.kind}")
        for group in ("efficiency", "latency_by_collective"):
            for coll, value in getattr(self, group).items():
                if coll not in COLLECTIVES:
                    raise ValueError(f"{group}: unknown collective {coll!r}; allowed: {', '.join(COLLECTIVES)}")
                if not str(self.sources.get(f"{group}.{coll}") or "").strip():
                    raise ValueError(f"{group}.{coll}: no source")
                if group == "efficiency" and not 0 < value <= 1:
                    raise ValueError(f"efficiency.{coll}: must be in (0, 1], got {value!r}")
                if group == "latency_by_collective" and value < 0:
                    raise ValueError(f"latency_by_collective.{coll}: must be >= 0, got {value!r}")
        return self

    def efficiency_for(self, collective: str) -> float:
        return self.efficiency.get(collective, 1.0)

    def latency_for(self, collective: str) -> float:
        return self.latency_by_collective.get(collective, self.latency_s)


_CLUSTER_FIELDS = ("nodes", "gpus_per_node", "nics_per_node", "nic_bandwidth_Bps", "gpu_tdp_W", "node_power_W")


class ClusterSpec(BaseModel):
    """Nodes of identical GPUs: NVLink (or PCIe) inside a node, a NIC fabric between nodes.

    ``inter_node.bandwidth_per_gpu_Bps`` is ``nics_per_node * nic_bandwidth_Bps / gpus_per_node``
    (a rail-optimized node: each GPU drives its own NIC); the loader derives it when the file
    leaves it out, and derives ``intra_node.bandwidth_per_gpu_Bps`` from the GPU spec's NVLink.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    display_name: str
    gpu: str = Field(min_length=1)  # a bundled GPU spec name or a spec file path
    nodes: int = Field(gt=0)
    gpus_per_node: int = Field(gt=0)
    nics_per_node: int = Field(gt=0)
    nic_bandwidth_Bps: float = Field(gt=0)  # one NIC, one direction
    intra_node: Fabric
    inter_node: Fabric
    gpu_tdp_W: float = Field(gt=0)
    node_power_W: float | None = Field(default=None, gt=0)  # whole node at full load (GPUs, CPUs, NICs, fans)
    sources: dict[str, str] = Field(default_factory=dict)
    measured: dict[str, Measured] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        return split_sourced(data, _CLUSTER_FIELDS)

    @model_validator(mode="after")
    def _sourced(self) -> "ClusterSpec":
        check_sourced(self, _CLUSTER_FIELDS, self.name)
        return self

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


__all__ = ["COLLECTIVES", "ClusterSpec", "Fabric", "GPUInterconnect", "Measured", "check_sourced", "split_sourced"]
