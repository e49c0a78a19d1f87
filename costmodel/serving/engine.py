"""The discrete-event loop: requests arrive, the engine runs one forward pass after another.

Events are kept in a ``heapq`` of (time, kind, index): arrivals and the end of the step in flight.
One engine (one model replica, a TP group) runs one step at a time, so the state changes only at
those two kinds of instant and a plain heap is enough; simpy's processes would add a generator switch
per event and a dependency for nothing this loop needs. When a step ends the scheduler applies it
(tokens emitted, requests finished) and forms the next batch at once; when there is nothing to run
the engine idles until the next arrival.

Runs of steps that can only be decodes (nobody waiting, prefilling or swapped) up to the next
arrival or finish are applied as one event (``Scheduler.run_of_decodes``): the same steps, the same
times, one heap event instead of many; at light load most steps are such runs.

Besides the requests' own timestamps the loop integrates the number of requests in the system,
N(t), over time, independently of them (Little's law, L = lambda W, is then a check), and records
every step: start, duration, requests, new tokens and KV blocks in use.
"""

from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass, field

from costmodel.serving.request import Request
from costmodel.serving.schedulers import Scheduler

_STEP_DONE, _ARRIVAL = 0, 1  # a step ending at the instant of an arrival is applied first


@dataclass
class Timeline:
    """Per step: start (s), duration (s), requests in the batch, new tokens, KV blocks in use."""

    start_s: array = field(default_factory=lambda: array("d"))
    duration_s: array = field(default_factory=lambda: array("d"))
    batch: array = field(default_factory=lambda: array("l"))
    tokens: array = field(default_factory=lambda: array("l"))
    used_blocks: array = field(default_factory=lambda: array("l"))


@dataclass
class EngineRun:
    requests: list[Request]
    timeline: Timeline
    in_system_area: float  # integral of N(t) dt over the run, request-seconds
    end_s: float  # when the last request left


def run_engine(requests: list[Request], scheduler: Scheduler, step_time, accepted=None) -> EngineRun:
    """Serve ``requests`` (each with its arrival_s) with ``scheduler``; ``step_time(batch)`` gives a
    step's seconds; ``accepted(request)`` the tokens a speculative decode step emits."""
    events = [(r.arrival_s, _ARRIVAL, i) for i, r in enumerate(requests)]
    heapq.heapify(events)
    tl = Timeline()
    bm = scheduler.bm
    busy_batch = None
    in_system, area, last_t = 0, 0.0, 0.0
    now = 0.0

    run_of_decodes = accepted is None and hasattr(step_time, "decode_only")

    def start(now_s: float):
        if run_of_decodes:  # steps that can only be decodes, predicted and applied as one event
            gap = events[0][0] - now_s if events else float("inf")
            found = scheduler.run_of_decodes(step_time.decode_only, gap)
            if found is not None:
                batch, times = found
                used, n, t = bm.used_blocks, len(batch.decode), now_s
                for dt in times:
                    tl.start_s.append(t)
                    tl.duration_s.append(dt)
                    tl.batch.append(n)
                    tl.tokens.append(n)
                    tl.used_blocks.append(used)
                    t += dt
                heapq.heappush(events, (t, _STEP_DONE, -1))
                return batch
        batch = scheduler.schedule(now_s)
        if batch is None:
            return None
        dt = step_time(batch)
        tl.start_s.append(now_s)
        tl.duration_s.append(dt)
        tl.batch.append(len(batch) if batch.padded is None else batch.padded[0])
        tl.tokens.append(batch.new_tokens)
        tl.used_blocks.append(bm.used_blocks)
        heapq.heappush(events, (now_s + dt, _STEP_DONE, -1))
        return batch

    while events:
        now, kind, i = heapq.heappop(events)
        area += in_system * (now - last_t)
        last_t = now
        if kind == _ARRIVAL:
            in_system += 1
            scheduler.add(requests[i])
            if busy_batch is None:
                busy_batch = start(now)
        else:
            finished = scheduler.complete(busy_batch, now, accepted)
            in_system -= len(finished)
            busy_batch = start(now)
    if in_system:
        stuck = in_system
        raise ValueError(f"{stuck} request(s) could never be scheduled: a prompt needs more KV blocks than "
                         f"the cache has ({bm.num_blocks} of {bm.block_size} tokens) or more tokens than "
                         f"max_batch_tokens ({scheduler.max_batch_tokens})")
    return EngineRun(requests=requests, timeline=tl, in_system_area=area, end_s=now)


__all__ = ["EngineRun", "Timeline", "run_engine"]
