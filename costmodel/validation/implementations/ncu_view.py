"""A prediction as Nsight Compute's per-kernel counters see it.

Two things separate the DRAM traffic a call causes from the sum of ``dram__bytes_read.sum`` +
``dram__bytes_write.sum`` over its kernels:

* **copies that are no kernels**: torch issues a same-dtype contiguous copy as cudaMemcpyAsync
  (graph steps marked ``memcpy`` in the catalog); Nsight Compute profiles kernels only.
* **dirty lines left in L2**: the L2 is write-back, so some of what a kernel writes is still dirty in
  L2 when the kernel ends. Nsight Compute flushes the caches between profiled kernels (its default
  ``--cache-control all``), and those write-backs are counted in no kernel. How much stays dirty
  depends on the kernel's mix of traffic: the L2 ends holding the last C bytes the kernel moved, dirty
  in the share W / (R + W) of its traffic that is writes, and never more than D_max dirty bytes:

      seen writes = W - min(D_max, C W / (R + W))

  Seen on the H200 (committed ncu.csv, impls-raw-3.json): a strided copy (writes half its traffic) of
  100.7 MB read 100.7 MB and wrote 81 MB, of 268 MB wrote 248 MB (19.7 MB dirty at the median over 112
  copies: C / 2); the fp32 dQ fill (writes only) of 134 MB wrote 105 MB (29 MB: D_max); a forward
  attention kernel writing a quarter of its traffic (O against Q, K, V) misses 8-10 MB of its writes
  (C / 4). A flat D fitted on whole calls (18.5 MB) left the forwards' writes 10-25 % under.
  C and D_max are fitted here.

The simulator predicts the traffic itself (every written byte reaches DRAM once); only the
comparison with Nsight Compute applies this view.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

VIEW_FILE = Path(__file__).parent / "data" / "ncu-view.yaml"
NAME = "ncu_dirty_l2"
MEANING = {"resident_bytes": "C: bytes of a kernel's last traffic the L2 still holds when it ends, dirty in the share "
                             "of that traffic that is writes; Nsight Compute's DRAM write counter misses them "
                             "(caches flushed between profiled kernels)",
           "max_dirty_bytes": "D_max: the most dirty bytes the L2 holds at a kernel's end (a kernel that only "
                              "writes)"}


@dataclass(frozen=True)
class DirtyL2:
    resident_bytes: float  # C
    max_dirty_bytes: float  # D_max

    def seen_writes(self, read_bytes: float, write_bytes: float) -> float:
        """Writes Nsight Compute counts for a kernel of ``read_bytes`` + ``write_bytes`` traffic."""
        total = read_bytes + write_bytes
        if total <= 0:
            return 0.0
        return max(0.0, write_bytes - min(self.max_dirty_bytes, self.resident_bytes * write_bytes / total))


NONE = DirtyL2(0.0, 0.0)  # every write counted


@lru_cache(maxsize=4)
def dirty_l2(path: Path = VIEW_FILE) -> DirtyL2:
    """The fitted (C, D_max) of the committed view file (none where there is no file: every write counted)."""
    if not path.is_file():
        return NONE
    body = yaml.safe_load(path.read_text())[NAME]
    return DirtyL2(float(body["resident_bytes"]["value"]), float(body["max_dirty_bytes"]["value"]))


def _hidden_names(impl: str) -> set[str]:
    from simulators.implementations import IMPLEMENTATIONS

    entry = IMPLEMENTATIONS[impl]
    return {s.name for s in (*entry.fwd, *entry.bwd) if s.memcpy} if entry.kind == "graph" else set()


def kernel_view(impl: str, r, dirty: DirtyL2 | None = None) -> tuple[float, float]:
    """(DRAM bytes, GPU s) of prediction ``r`` as Nsight Compute's kernel counters see it: memcpy steps
    left out, each kernel's writes less its dirty share (default: the committed fit)."""
    v = dirty_l2() if dirty is None else dirty
    hidden = _hidden_names(impl)
    kernels = [k for k in r.kernels if k.name not in hidden]
    nbytes = sum(k.hbm_read_bytes + v.seen_writes(k.hbm_read_bytes, k.hbm_write_bytes) for k in kernels)
    return nbytes, sum(k.time_s for k in kernels)


def fit_dirty_l2(predictions: list, max_bytes: float = 80e6) -> DirtyL2:
    """(C, D_max) minimising the median |log(view / measured)| over ``predictions`` [(impl, result,
    measured bytes)] (the calibration grid's profiled calls): a median, so that the few calls whose bytes
    the model misses for other reasons (the memory-efficient backward's re-reads) do not set it. Grid
    search in 2 MB steps, then 0.5 MB steps within 2 MB of the best."""
    calls = [(i, r, m) for i, r, m in predictions if m > 0]

    def loss(v):
        return statistics.median(abs(math.log(kernel_view(i, r, v)[0] / m)) for i, r, m in calls)

    def best(cs, ds):
        return min((DirtyL2(c, d) for c in cs for d in ds), key=lambda v: (loss(v), v.resident_bytes,
                                                                          v.max_dirty_bytes))

    coarse = [2e6 * i for i in range(int(max_bytes / 2e6) + 1)]
    v = best(coarse, coarse)

    def fine(x):
        return [max(0.0, x + 0.5e6 * i) for i in range(-4, 5)]
    return best(fine(v.resident_bytes), fine(v.max_dirty_bytes))


def write_view(v: DirtyL2, n_calls: int, gpu: str, path: Path = VIEW_FILE) -> None:
    measured = {"method": f"grid search (2 MB, then 0.5 MB steps) for the least median |log(predicted / measured)| "
                          f"DRAM bytes over the calibration grid's {n_calls} profiled calls (ncu.csv, "
                          f"impls-raw-3.json): costmodel/validation/implementations/calibrate.py",
                "gpu": gpu, "date": _dt.date.today().isoformat()}
    body = {NAME: {k: {"value": float(f"{getattr(v, k):.4g}"), "unit": "B", "meaning": MEANING[k],
                       "measured": dict(measured)} for k in ("resident_bytes", "max_dirty_bytes")}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# written by python3 -m costmodel.validation.implementations.calibrate --write-spec\n"
                   + yaml.safe_dump(body, sort_keys=False, width=110))
    tmp.replace(path)
    dirty_l2.cache_clear()
