"""Pipeline schedules: bubble fraction and the time of one pipelined iteration.

Narayanan et al. 2021 (SC'21), Section 2.2. With p stages, m micro-batches per pipeline and
t_f, t_b the forward and backward time of one micro-batch on one stage:

- GPipe (Huang et al. 2019) and 1F1B (PipeDream-Flush, Narayanan et al. 2021 §2.2.1) have the
  same bubble, (p - 1) stage-slots of (t_f + t_b): the iteration takes (m + p - 1)·(t_f + t_b),
  and the bubble time fraction of ideal time is (p - 1)/m (their §2.2.1), i.e. of the whole
  iteration

      bubble_fraction = (p - 1) / (m + p - 1).

  1F1B differs in memory only: at most p micro-batches in flight instead of m.
- Interleaved 1F1B (§2.2.2): each device holds v model chunks, so a stage-slot is (t_f + t_b)/v
  and the bubble shrinks v-fold, (p - 1)/(v·m) of ideal time; of the whole iteration

      bubble_fraction = (p - 1) / (v·m + p - 1),

  at the price of v times as many point-to-point transfers. Megatron requires m to be a multiple
  of p for it (their §2.2.2: "the number of microbatches in a batch is an integer multiple of
  the degree of pipeline parallelism").
"""

from __future__ import annotations

import numpy as np

SCHEDULES = ("gpipe", "1f1b", "interleaved")


def _check_schedule(schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: unknown {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def bubble_fraction(p, m, v=1, schedule: str = "1f1b"):
    """Share of the iteration a stage sits idle: (p-1)/(m+p-1), interleaved (p-1)/(v·m+p-1)."""
    _check_schedule(schedule)
    p, m, v = (np.asarray(x, dtype=np.float64) for x in (p, m, v))
    if schedule != "interleaved":
        v = np.ones_like(v)
    return (p - 1) / (v * m + p - 1)


def pipeline_time(micro_batch_time_s, p, m, v=1, schedule: str = "1f1b"):
    """Iteration time of the pipeline: (m + (p-1)/v)·t_mb, t_mb = forward + backward of one
    micro-batch through one device's share of the layers (all its chunks together).

    This is m·t_mb / (1 - bubble_fraction) (Narayanan et al. 2021 §2.2), v = 1 unless interleaved.
    """
    _check_schedule(schedule)
    p, m, v = (np.asarray(x, dtype=np.float64) for x in (p, m, v))
    if schedule != "interleaved":
        v = np.ones_like(v)
    return (m + (p - 1) / v) * np.asarray(micro_batch_time_s, dtype=np.float64)


def in_flight_micro_batches(p, m, schedule: str = "1f1b"):
    """Micro-batches whose activations the first stage holds at once: GPipe all m, 1F1B min(p, m)."""
    _check_schedule(schedule)
    p, m = np.asarray(p), np.asarray(m)
    return m if schedule == "gpipe" else np.minimum(p, m)


__all__ = ["SCHEDULES", "bubble_fraction", "in_flight_micro_batches", "pipeline_time"]
