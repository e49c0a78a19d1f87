"""Fitted timing parameters of our Numba kernels (kernels/) on one GPU: the ``numba_kernels:``
section of a calibrated spec.

Our kernels are timed like any other implementation (``simulators/timing.py``: waves and the
per-block issue share, Little's law, fixed cost per launch), with parameters of their own:
what share of the FP32 peak each kernel's main loop attains, what share of the DRAM bandwidth
each memory-bound helper attains, and the host time of one call the GPU does not hide. Each
parameter carries its unit, its physical meaning and ``measured:`` provenance (the fit, the
GPU, the date); ``costmodel/validation/fit_ours.py`` fits them on one grid of measured calls
and reports the errors on another.

Names: ``<kernel>_efficiency`` (share of the calibrated FP32 peak, 1) for the simulator's
kernel names with matmul work, suffixed ``_d<head_dim>`` where the kernel's tiles (and so its
rate) differ by head_dim; ``<kernel>_memory_efficiency`` (share of the calibrated HBM
bandwidth, 1) for kernels that only move bytes; and GPU-wide ``warps_to_saturate`` (warps),
``kernel_fixed_s``, ``host_api_s``, ``host_step_s`` (s).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hardware_specs.implementations import Fitted


class NumbaKernelsSection(BaseModel):
    """The ``numba_kernels:`` section: parameter name -> fitted value, plus the fit's summary."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Fitted]
    fit: dict | None = None  # grids and residuals of the fit

    def value(self, name: str, default: float | None = None) -> float | None:
        p = self.params.get(name)
        return default if p is None else p.value
