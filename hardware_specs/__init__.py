"""GPU hardware specs: datasheet numbers with their sources, and calibrated overlays."""

from hardware_specs.loader import (
    SpecError,
    calibrate,
    list_calibrated,
    list_gpus,
    load_gpu,
    spec_to_raw,
    spec_to_yaml,
)
from hardware_specs.schema import COMPUTE_UNITS, MEMORY_LEVELS, RESOURCES, GPUSpec, Measurement
from hardware_specs.cluster import list_clusters, load_cluster  # noqa: E402 (after the loader it uses)

__all__ = [
    "COMPUTE_UNITS",
    "MEMORY_LEVELS",
    "RESOURCES",
    "GPUSpec",
    "Measurement",
    "SpecError",
    "calibrate",
    "list_calibrated",
    "list_clusters",
    "list_gpus",
    "load_cluster",
    "load_gpu",
    "spec_to_raw",
    "spec_to_yaml",
]
