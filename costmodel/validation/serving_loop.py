"""Serve a workload for real, in wall-clock time: the simulator's scheduler and block manager form
each batch, ``serving_paged.PagedModel`` runs it, and every request's token times are measured.

The loop is the simulator's engine with the step cost replaced by the step itself: requests whose
arrival time has passed join the scheduler's queue before each step; the step runs and the device is
synchronized (a server must see the sampled tokens before it schedules again); the scheduler applies
it at the measured end time. When nothing is runnable the loop waits for the next arrival.
"""

from __future__ import annotations

import time

import numpy as np

from costmodel.serving.blocks import BlockManager
from costmodel.serving.metrics import request_table, run_metrics
from costmodel.serving.request import Request
from costmodel.serving.schedulers import make_scheduler


class _Run:  # the fields run_metrics reads from an engine run
    def __init__(self, requests, timeline, area, end_s):
        self.requests, self.timeline, self.in_system_area, self.end_s = requests, timeline, area, end_s


def serve(paged, workload, *, scheduler: str = "chunked", num_blocks: int, max_seqs: int = 256,
          max_batch_tokens: int = 2048, use_graphs: bool = True, seed: int = 0, budget_s: float | None = None,
          sync=None, clock=time.perf_counter) -> dict:
    """Serve ``workload`` (a ``Workload``) on ``paged`` (a ``PagedModel``); returns the metrics,
    the per-request table and every step (start, measured seconds from the loop's top to the
    synchronized end, of which the scheduler's, decodes, their context sum, prefill chunks as
    (new, context)). Stops admitting at ``budget_s`` of wall time (the rest are
    reported unserved)."""
    from costmodel.serving.engine import Timeline

    if scheduler not in ("continuous", "chunked"):
        raise ValueError(f"scheduler: {scheduler!r}; the real loop runs continuous or chunked")
    bm = BlockManager(num_blocks, paged.bs)
    sched = make_scheduler(scheduler, bm, max_seqs=max_seqs, max_batch_tokens=max_batch_tokens)
    rng = np.random.default_rng(seed)
    vocab = paged.cfg.vocab_size
    reqs = [Request(i, float(a), int(p), int(o))
            for i, (a, p, o) in enumerate(zip(workload.arrival_s, workload.prompt_len, workload.output_len))]
    tokens = {r.rid: rng.integers(0, vocab, r.prompt_len).tolist() for r in reqs}
    tl, steps = Timeline(), []
    nxt, n = 0, len(reqs)
    t0 = clock()
    now = 0.0
    while True:
        now = clock() - t0
        if budget_s is not None and now > budget_s:
            break
        while nxt < n and reqs[nxt].arrival_s <= now:
            sched.add(reqs[nxt])
            nxt += 1
        t_sched = clock()
        batch = sched.schedule(now)
        t_sched = clock() - t_sched
        if batch is None:
            if nxt >= n and sched.idle:
                break
            if nxt < n:
                time.sleep(max(0.0, min(reqs[nxt].arrival_s - (clock() - t0), 0.01)))
            continue
        emitted = paged.step(batch, bm.tables, tokens, use_graphs)
        if sync is not None:
            sync()
        end = clock() - t0
        for rid, tok in emitted.items():
            tokens[rid].append(tok)
        steps.append({"start_s": now, "time_s": end - now, "schedule_s": t_sched, **paged.last_timing,
                      "decodes": len(batch.decode),
                      "decode_ctx_sum": batch.decode_ctx_sum, "chunks": [(m, c) for _, m, c in batch.prefill]})
        tl.start_s.append(now)
        tl.duration_s.append(end - now)
        tl.batch.append(len(batch))
        tl.tokens.append(batch.new_tokens)
        tl.used_blocks.append(bm.used_blocks)
        sched.complete(batch, end)
    done = [r for r in reqs if r.finish_s == r.finish_s]
    out = {"steps": steps, "served": len(done), "offered": n, "stopped_by_budget": len(done) < n,
           "graphs": len(paged.graphs)}
    if done:  # N(t) from the arrival and finish instants of the served requests
        events = sorted([(r.arrival_s, 1) for r in done] + [(r.finish_s, -1) for r in done])
        times = np.array([e[0] for e in events])
        count = np.cumsum([e[1] for e in events])
        area = float(np.sum(count[:-1] * np.diff(times)))
        run = _Run(done, tl, area, max(r.finish_s for r in done))
        out["metrics"] = run_metrics(run, num_blocks)
        out["requests"] = {k: v.tolist() for k, v in request_table(done).items()}
    return out


__all__ = ["serve"]
