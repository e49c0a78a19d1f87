"""The committed H200 step runs (``results/h200/step_run1.json``, ``step_run2.json``), read as dicts.

Run 1 (``python3 -m costmodel.reference.gpu_run --out OUT --budget-s 265``, the runner's first
name, now ``costmodel.validation.step_run``): GEMM lattice and held-out projections, memory ops,
SDPA, launch costs, and the model runs. Run 2 (``... --budget-s 150 --sections launch families``):
kernel families, per-op host costs, unaligned GEMMs, launch costs, and the model runs again
with the memory each started from. Each file's ``meta`` holds the command, GPU, driver, torch,
CUDA and cuDNN versions and the date.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

RUN1 = "results/h200/step_run1.json"
RUN2 = "results/h200/step_run2.json"


def load_results(path: str | Path | None = None) -> dict:
    """A results file; by default run 1."""
    if path is None:
        return json.loads(resources.files("costmodel.validation").joinpath(RUN1).read_text())
    return json.loads(Path(path).read_text())


def load_results_run2() -> dict:
    return json.loads(resources.files("costmodel.validation").joinpath(RUN2).read_text())


__all__ = ["RUN1", "RUN2", "load_results", "load_results_run2"]
