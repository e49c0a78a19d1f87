"""Load cluster specs (``hardware_specs/clusters/*.yaml`` or a file), like ``load_gpu`` loads GPUs.

A cluster file names its GPU (``gpu: h100-sxm5-80gb``); two fabric bandwidths may be left out
and are then derived, with the derivation as their source:

- ``intra_node.bandwidth_per_gpu_Bps`` = the GPU spec's ``interconnect.nvlink_bandwidth_per_direction_Bps``
  (PCIe's when the GPU has no NVLink), so a GPU's NVLink is stated once, in its spec;
- ``inter_node.bandwidth_per_gpu_Bps`` = ``nics_per_node * nic_bandwidth_Bps / gpus_per_node``.

A *measured overlay* is a YAML file with ``base: <cluster name or path>`` and, under
``intra_node`` / ``inter_node``, only the values it replaces, each written
``{value: ..., measured: {method, gpu, date}}`` (issue 19's sweep writes one). ``load_cluster``
merges it onto its base on the raw mappings, so the result passes the same schema.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hardware_specs.interconnect import ClusterSpec
from hardware_specs.loader import SpecError, load_gpu
from hardware_specs.yaml_files import DataFileError, load_mapping, read_text


def _clusters_dir():
    return resources.files("hardware_specs").joinpath("clusters")


def list_clusters() -> list[str]:
    """Names of the bundled cluster specs."""
    return sorted(p.name[: -len(".yaml")] for p in _clusters_dir().iterdir() if p.name.endswith(".yaml"))


def _read(name_or_path: str | Path) -> dict[str, Any]:
    key = str(name_or_path)
    if key in list_clusters():
        text = _clusters_dir().joinpath(f"{key}.yaml").read_text()
    else:
        path = Path(key)
        if not path.is_file():
            raise SpecError(f"cluster: unknown cluster {key!r} (not a bundled spec and not a file); "
                            f"bundled: {', '.join(list_clusters())}")
        try:
            text = read_text(path, "file")
        except DataFileError as exc:
            raise SpecError(str(exc)) from None
    try:  # the project's one strict reader: a repeated key is an error, as in GPU specs
        return load_mapping(text, key, "cluster file")
    except DataFileError as exc:
        raise SpecError(str(exc)) from None


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay onto base, nested mappings key by key; a ``{value, ...}`` mapping replaces whole."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and "value" not in value and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value)
        else:
            out[key] = value
    return out


def _plain(raw: Any) -> Any:
    return raw["value"] if isinstance(raw, dict) and "value" in raw else raw


def _derive_bandwidths(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    raw = dict(raw)
    intra = dict(raw.get("intra_node") or {})
    inter = dict(raw.get("inter_node") or {})
    if "bandwidth_per_gpu_Bps" not in intra:
        gpu = load_gpu(raw["gpu"]) if "gpu" in raw else None
        ic = gpu.interconnect if gpu is not None else None
        if ic is None:
            raise SpecError(f"{origin}: intra_node.bandwidth_per_gpu_Bps is not given and GPU "
                            f"{raw.get('gpu')!r} has no interconnect section to derive it from")
        if intra.get("kind") == "pcie" or ic.nvlink_bandwidth_per_direction_Bps is None:
            bw, what = ic.pcie_bandwidth_per_direction_Bps, "pcie_bandwidth_per_direction_Bps"
        else:
            bw, what = ic.nvlink_bandwidth_per_direction_Bps, "nvlink_bandwidth_per_direction_Bps"
        intra["bandwidth_per_gpu_Bps"] = {"value": bw, "source": f"GPU spec {gpu.name}: interconnect.{what} "
                                          f"({ic.sources.get(what, '')})"}
    if "bandwidth_per_gpu_Bps" not in inter:
        try:
            nics, nic_bw, gpn = (float(_plain(raw[k])) for k in ("nics_per_node", "nic_bandwidth_Bps", "gpus_per_node"))
        except (KeyError, TypeError, ValueError):
            raise SpecError(f"{origin}: inter_node.bandwidth_per_gpu_Bps is not given and nics_per_node, "
                            "nic_bandwidth_Bps, gpus_per_node do not all give it") from None
        inter["bandwidth_per_gpu_Bps"] = {"value": nics * nic_bw / gpn,
                                          "source": "nics_per_node x nic_bandwidth_Bps / gpus_per_node (one rail per GPU)"}
    raw["intra_node"], raw["inter_node"] = intra, inter
    return raw


def load_cluster(name_or_path: str | Path) -> ClusterSpec:
    """A bundled cluster by name (``list_clusters()``), a cluster YAML file, or a measured overlay file."""
    raw = _read(name_or_path)
    base = raw.pop("base", None)
    if base is not None:
        base = str(base)
        if base not in list_clusters() and not Path(base).is_absolute():
            base = str(Path(str(name_or_path)).parent / base)  # a relative base sits beside the overlay
        base_raw = _read(base)
        if "base" in base_raw:
            raise SpecError(f"{name_or_path}: base {base!r} is itself an overlay; an overlay's base must be a "
                            "full cluster spec (one level of overlay)")
        name = raw.pop("name", None) or f"{base_raw.get('name')}-measured"
        raw = _merge(base_raw, raw)
        raw["name"] = name
    raw = _derive_bandwidths(raw, str(name_or_path))
    try:
        return ClusterSpec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "cluster"
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"{loc}: {err['msg']}{shown}")
        raise SpecError(f"{name_or_path}: invalid cluster spec: " + "; ".join(lines)) from None


def cluster_of_gpu(gpu_name: str) -> str | None:
    """The first bundled cluster built of this GPU (a calibrated spec counts as its datasheet base), or None."""
    base = gpu_name.removesuffix("-measured").removesuffix("-calibrated")
    for name in list_clusters():
        if load_cluster(name).gpu in (gpu_name, base):
            return name
    return None


def with_nodes(cluster: ClusterSpec, gpus: int) -> ClusterSpec:
    """The same cluster cut to ``gpus`` GPUs (whole nodes, or part of one node when gpus < gpus_per_node)."""
    if gpus < 1:
        raise ValueError(f"gpus: must be >= 1, got {gpus!r}")
    g = cluster.gpus_per_node
    if gpus > cluster.total_gpus:
        raise ValueError(f"gpus: {gpus} exceeds cluster {cluster.name}'s {cluster.total_gpus} GPUs "
                         f"({cluster.nodes} nodes x {g})")
    if gpus > g and gpus % g:
        raise ValueError(f"gpus: {gpus} is not a whole number of {g}-GPU nodes of cluster {cluster.name}")
    if gpus < g:
        return cluster.model_copy(update={"nodes": 1, "gpus_per_node": gpus})
    return cluster.model_copy(update={"nodes": gpus // g})


__all__ = ["list_clusters", "load_cluster", "with_nodes"]
