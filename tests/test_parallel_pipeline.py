"""Pipeline bubbles (Narayanan et al. 2021 §2.2) against an event-by-event simulation of the schedules."""

import numpy as np
import pytest

from costmodel.parallel.pipeline import bubble_fraction, in_flight_micro_batches, pipeline_time


def simulate(p, m, tf, tb, schedule):
    """Makespan of GPipe or 1F1B on p uniform stages: each op starts when its stage is free and its input is ready."""
    orders = []
    for s in range(p):
        if schedule == "gpipe":
            order = [("F", i) for i in range(m)] + [("B", i) for i in reversed(range(m))]
        else:  # 1F1B (PipeDream-Flush): p-s-1 warm-up forwards, then one forward / one backward, then the rest
            warm = min(p - s - 1, m)
            order = [("F", i) for i in range(warm)]
            f, b = warm, 0
            while b < m:
                if f < m:
                    order.append(("F", f))
                    f += 1
                order.append(("B", b))
                b += 1
        orders.append(order)
    done, free, pos = {}, [0.0] * p, [0] * p
    while any(pos[s] < len(orders[s]) for s in range(p)):
        progressed = False
        for s in range(p):
            if pos[s] == len(orders[s]):
                continue
            kind, i = orders[s][pos[s]]
            dep = (s - 1, "F", i) if kind == "F" and s > 0 else (s + 1, "B", i) if kind == "B" and s < p - 1 else \
                (s, "F", i) if kind == "B" else None
            if dep is not None and dep not in done:
                continue
            start = max(free[s], done.get(dep, 0.0))
            free[s] = done[(s, kind, i)] = start + (tf if kind == "F" else tb)
            pos[s] += 1
            progressed = True
        assert progressed
    return max(free)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 4), (8, 32), (3, 7)])
def test_gpipe_and_1f1b_time_match_simulation(schedule, p, m):
    tf, tb = 1.0, 2.0
    assert pipeline_time(tf + tb, p, m, schedule=schedule) == pytest.approx(simulate(p, m, tf, tb, schedule))
    idle = 1 - m * (tf + tb) / simulate(p, m, tf, tb, schedule)
    assert bubble_fraction(p, m, schedule=schedule) == pytest.approx(idle)  # (p-1)/(m+p-1)


def test_interleaved_bubble_is_v_fold_smaller():
    # Narayanan §2.2.2: bubble (p-1)/(v m) of ideal time  <=>  (p-1)/(v m + p - 1) of the iteration
    p, m, v = 8, 16, np.array([1, 2, 4])
    ideal = m * 1.0
    bubble = (p - 1) / v * 1.0
    assert np.allclose(bubble / ideal, (p - 1) / (v * m))
    assert np.allclose(bubble_fraction(p, m, v, "interleaved"), bubble / (ideal + bubble))
    assert np.allclose(pipeline_time(1.0, p, m, v, "interleaved"), ideal + bubble)
    assert bubble_fraction(p, m, 4, "1f1b") == pytest.approx((p - 1) / (m + p - 1))  # v ignored without interleaving


def test_in_flight():
    assert in_flight_micro_batches(4, 16, "gpipe") == 16
    assert in_flight_micro_batches(4, 16, "1f1b") == 4
    assert in_flight_micro_batches(8, 2, "1f1b") == 2
    with pytest.raises(ValueError, match="schedule: unknown 'zb'"):
        bubble_fraction(2, 2, schedule="zb")
