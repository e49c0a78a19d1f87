"""A prediction as Nsight Compute's per-kernel counters see it.

Two things separate the DRAM traffic a call causes from the sum of ``dram__bytes_read.sum`` +
``dram__bytes_write.sum`` over its kernels:

* **copies that are no kernels**: torch issues a same-dtype contiguous copy as cudaMemcpyAsync
  (graph steps marked ``memcpy`` in the catalog); Nsight Compute profiles kernels only.
* **dirty lines left in L2**: the L2 is write-back, so what a kernel writes last is still dirty in
  L2 when the kernel ends. Nsight Compute flushes the caches between profiled kernels (its default
  ``--cache-control all``), and those write-backs are counted in no kernel. Seen on the H200: a strided
  copy of 100.7 MB read 100.7 MB and wrote 81 MB; of 268 MB, wrote 248 MB; the fp32 dQ fill of 134 MB
  wrote 105 MB (committed ncu.csv, impls-raw-3.json). So each kernel's writes are seen as
  max(0, W - D), D (bytes) the dirty share of the L2 at a kernel's end, fitted here.

The simulator predicts the traffic itself (every written byte reaches DRAM once); only the
comparison with Nsight Compute applies this view.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from functools import lru_cache
from pathlib import Path

import yaml

VIEW_FILE = Path(__file__).parent / "data" / "ncu-view.yaml"
NAME = "ncu_dirty_l2_bytes"
MEANING = ("bytes a kernel has written that are still dirty in L2 when it ends: Nsight Compute's DRAM write "
           "counter misses them (flushed between profiled kernels)")


@lru_cache(maxsize=4)
def dirty_l2_bytes(path: Path = VIEW_FILE) -> float:
    """The fitted D of the committed view file (0 where there is none: every write counted)."""
    if not path.is_file():
        return 0.0
    return float(yaml.safe_load(path.read_text())[NAME]["value"])


def _hidden_names(impl: str) -> set[str]:
    from simulators.implementations import IMPLEMENTATIONS

    entry = IMPLEMENTATIONS[impl]
    return {s.name for s in (*entry.fwd, *entry.bwd) if s.memcpy} if entry.kind == "graph" else set()


def kernel_view(impl: str, r, dirty_bytes: float | None = None) -> tuple[float, float]:
    """(DRAM bytes, GPU s) of prediction ``r`` as Nsight Compute's kernel counters see it: memcpy steps
    left out, each kernel's writes less ``dirty_bytes`` (default: the committed fit)."""
    d = dirty_l2_bytes() if dirty_bytes is None else dirty_bytes
    hidden = _hidden_names(impl)
    kernels = [k for k in r.kernels if k.name not in hidden]
    nbytes = sum(k.hbm_read_bytes + max(0.0, k.hbm_write_bytes - d) for k in kernels)
    return nbytes, sum(k.time_s for k in kernels)


def fit_dirty_bytes(predictions: list, step_bytes: float = 0.5e6, max_bytes: float = 60e6) -> float:
    """D minimising the median |log(view / measured)| over ``predictions`` [(impl, result, measured bytes)]
    (the calibration grid's profiled calls): a median, so that the few calls whose bytes the model misses
    for other reasons (the memory-efficient backward's re-reads) do not set it. Grid search, 0.5 MB steps."""
    def loss(d):
        return statistics.median(abs(math.log(kernel_view(i, r, d)[0] / m)) for i, r, m in predictions if m > 0)

    grid = [i * step_bytes for i in range(int(max_bytes / step_bytes) + 1)]
    return min(grid, key=lambda d: (loss(d), d))


def write_view(value: float, n_calls: int, gpu: str, path: Path = VIEW_FILE) -> None:
    body = {NAME: {"value": float(f"{value:.4g}"), "unit": "B", "meaning": MEANING,
                   "measured": {"method": f"grid search (0.5 MB steps) for the least median |log(predicted / "
                                          f"measured)| DRAM bytes over the calibration grid's {n_calls} profiled "
                                          f"calls (ncu.csv, impls-raw-3.json): "
                                          f"costmodel/validation/implementations/calibrate.py",
                                "gpu": gpu, "date": _dt.date.today().isoformat()}}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# written by python3 -m costmodel.validation.implementations.calibrate --write-spec\n"
                   + yaml.safe_dump(body, sort_keys=False, width=110))
    tmp.replace(path)
    dirty_l2_bytes.cache_clear()
