"""Schedulers: which requests, and how many of their tokens, go into the next forward pass.

- ``continuous``: vLLM's default scheduler (Kwon et al. 2023 §4.5; Yu et al. 2022, Orca, for
  iteration-level scheduling). Waiting requests are admitted first-come-first-served while their
  whole prompts fit the token budget ``max_batch_tokens``, ``max_seqs`` and the free KV blocks; an
  iteration that admits any runs their prefills alone. Otherwise every running request decodes one
  token; one that needs a block when none is free preempts the most recently admitted running
  request (recompute or swap), and swapped requests come back, oldest first, when nothing was
  preempted in that step.
- ``chunked``: Sarathi-Serve (Agrawal et al. 2024 §4.2, stall-free batching): each iteration holds
  every running decode (1 token each) first, then continues partial prefills and admits new ones,
  cut into chunks, until ``max_batch_tokens`` tokens are in the batch; prefills and decodes mix.
- ``static``: the request-level batching that iteration-level scheduling replaced (FasterTransformer;
  Yu et al. 2022, Orca): up to ``max_seqs`` waiting requests form a batch, padded to its longest
  prompt, that decodes until its longest output is done; nobody joins or leaves meanwhile, and all
  responses return at its end.

Every scheduler keeps a block for each token it puts in the cache (``BlockManager``); decode
entries of speculative decoding process 1 + gamma tokens (the last token and gamma drafts).
"""

from __future__ import annotations

from collections import deque

from costmodel.serving.blocks import BlockManager, blocks_for
from costmodel.serving.request import Request

SCHEDULERS = ("continuous", "chunked", "static")
PREEMPTION = ("recompute", "swap")


class Batch:
    """One forward pass: decode requests (1 + gamma new tokens each, context = computed) and
    prefill chunks (request, new tokens, context), plus blocks copied to or from host memory."""

    __slots__ = ("decode", "decode_ctx_sum", "prefill", "swap_blocks", "padded", "new_tokens", "steps")

    def __init__(self):
        self.decode: list[Request] = []
        self.decode_ctx_sum = 0
        self.prefill: list[tuple[Request, int, int]] = []
        self.swap_blocks = 0
        self.padded: tuple[int, int, int] | None = None  # static: (batch, new tokens each, context each)
        self.new_tokens = 0
        self.steps = 1  # > 1: that many identical decode steps in a row (``Scheduler.run_of_decodes``)

    def __len__(self) -> int:
        return len(self.decode) + len(self.prefill)


class Scheduler:
    """Queues (waiting, running, swapped) and the bookkeeping after a step, shared by the policies."""

    name = "base"

    def __init__(self, blocks: BlockManager, max_seqs: int = 256, max_batch_tokens: int = 2048,
                 preemption: str = "recompute", gamma: int = 0):
        if preemption not in PREEMPTION:
            raise ValueError(f"preemption: {preemption!r}; allowed: {', '.join(PREEMPTION)}")
        self.bm = blocks
        self.max_seqs = max_seqs
        self.max_batch_tokens = max_batch_tokens
        self.preemption = preemption
        self.lookahead = 1 + gamma  # KV slots a decode step writes
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # decoding, in the order their prefills ended
        self.prefilling: list[Request] = []  # admitted, prefill not finished (chunked prefill)
        self.swapped: deque[Request] = deque()
        self.preemptions = 0
        self.swapped_blocks = 0

    def add(self, r: Request) -> None:
        self.waiting.append(r)

    @property
    def idle(self) -> bool:
        return not (self.waiting or self.running or self.prefilling or self.swapped)

    @property
    def admitted(self) -> int:
        return len(self.running) + len(self.prefilling)

    # ------------------------------------------------------------ shared steps

    def _preempt(self, victim: Request, batch: Batch) -> None:
        victim.preemptions += 1
        self.preemptions += 1
        if self.preemption == "swap" and victim.in_decode and self.bm.can_swap_out(victim.rid):
            batch.swap_blocks += self.bm.swap_out(victim.rid)
            self.swapped_blocks += self.bm.swapped[victim.rid]
            victim.cap = 0
            self.swapped.append(victim)
        else:  # recompute: drop the cache, prefill prompt + generated again later, ahead of new arrivals
            self.bm.free(victim.rid)
            victim.computed = 0
            victim.cap = 0
            self.waiting.appendleft(victim)

    def _decodes(self, batch: Batch) -> bool:
        """Put every decoding request (in order) in the batch, growing its blocks; when none is free,
        preempt the newest admission (a partial prefill first, then the end of ``running``), down to
        the request itself. Returns whether anyone was preempted."""
        bm, bs, look, running, prefilling = self.bm, self.bm.block_size, self.lookahead, self.running, self.prefilling
        preempted = False
        ctx_sum, i = 0, 0
        while i < len(running):
            r = running[i]
            if r.computed + look > r.cap:
                while not bm.grow(r.rid, r.computed + look):
                    victim = prefilling.pop() if prefilling else running.pop()
                    self._preempt(victim, batch)
                    preempted = True
                    if victim is r:
                        break
                if r.cap == 0:  # r preempted itself: everyone after it already was
                    break
                r.cap = bm.held(r.rid) * bs
            ctx_sum += r.computed
            i += 1
        batch.decode = running[:]
        batch.decode_ctx_sum += ctx_sum
        batch.new_tokens += look * len(running)
        return preempted

    def _swap_in(self, batch: Batch) -> None:
        """Swapped requests back, oldest first, while their blocks and the next step's slots fit
        above the watermark; they decode in this step."""
        bm, bs = self.bm, self.bm.block_size
        while self.swapped and self.admitted < self.max_seqs:
            r = self.swapped[0]
            if bm.free_blocks - blocks_for(r.computed + self.lookahead, bs) < bm.watermark_blocks:
                break
            self.swapped.popleft()
            batch.swap_blocks += bm.swap_in(r.rid)
            bm.grow(r.rid, r.computed + self.lookahead)
            r.cap = bm.held(r.rid) * bs
            self.running.append(r)
            batch.decode.append(r)
            batch.decode_ctx_sum += r.computed
            batch.new_tokens += self.lookahead

    def _admit(self, r: Request) -> bool:
        """Blocks for everything ``r`` knows, keeping the watermark free (vLLM's can_allocate)."""
        if not self.bm.can_admit(r.known):
            return False
        self.bm.grow(r.rid, r.known)
        r.cap = self.bm.held(r.rid) * self.bm.block_size
        return True

    def complete(self, batch: Batch, end_s: float, accepted=None) -> list[Request]:
        """Apply a finished step at time ``end_s``: caches grow, tokens are emitted, finished requests
        leave and free their blocks. ``accepted(r)`` gives the tokens a speculative decode step
        emitted for ``r`` (1 without speculation). Returns the requests that finished."""
        finished = []
        if accepted is None:
            k = batch.steps
            for r in batch.decode:
                r.computed += k
                r.generated += k
                if r.generated >= r.output_len:
                    finished.append(r)
        else:
            for r in batch.decode:
                k = min(accepted(r), r.output_len - r.generated)
                r.computed += k
                r.generated += k
                if r.generated >= r.output_len:
                    finished.append(r)
        caught_up = []
        for r, n, _ in batch.prefill:
            r.computed += n
            if r.computed == r.prompt_len + r.generated:
                r.generated += 1
                caught_up.append(r)
                if r.generated == 1:
                    r.first_token_s = end_s
                if r.generated >= r.output_len:
                    finished.append(r)
        if caught_up:  # prefills done: they decode from the next step, after those already decoding
            done = set(map(id, caught_up))
            self.prefilling = [r for r in self.prefilling if id(r) not in done]
            self.running.extend(r for r in caught_up if r.generated < r.output_len)
        if finished:
            for r in finished:
                r.finish_s = end_s
                self.bm.free(r.rid)
                r.cap = 0
            gone = set(map(id, finished))
            self.running = [r for r in self.running if id(r) not in gone]
        return finished

    def run_of_decodes(self, step_time, gap_s: float):
        """The next steps as one Batch of ``steps`` decode steps, when nothing but decoding can happen
        until then (nobody waiting, prefilling or swapped; no speculation): the same requests, each
        context one longer a step, up to the first finish, up to the step in flight at the next
        arrival (``gap_s`` from now) and within the free blocks (taken for the whole run at once,
        so no preemption can fall inside it). Each step's time from ``step_time(n, ctx_sum)``.
        Returns (batch, step times) or None. The scheduling is the step-by-step one; only the KV
        blocks in use are recorded as taken at the run's start."""
        running = self.running
        if self.waiting or self.prefilling or self.swapped or not running or self.lookahead != 1:
            return None
        d = len(running)
        rem = min(r.output_len - r.generated for r in running)
        if rem < 2:
            return None
        ctx = sum(r.computed for r in running)
        times, start = [], 0.0
        while len(times) < rem and (not times or start < gap_s):
            t = step_time(d, ctx + len(times) * d)
            times.append(t)
            start += t
        bm, bs = self.bm, self.bm.block_size
        k = len(times)
        while k >= 2:
            need = sum(max(0, -(-(r.computed + k) // bs) - r.cap // bs) for r in running)
            if need <= bm.free_blocks:
                break
            k //= 2
        if k < 2:
            return None
        for r in running:
            if r.computed + k > r.cap:
                bm.grow(r.rid, r.computed + k)
                r.cap = bm.held(r.rid) * bs
        batch = Batch()
        batch.decode, batch.decode_ctx_sum, batch.new_tokens, batch.steps = running[:], ctx, d, k
        return batch, times[:k]

    def schedule(self, now_s: float) -> Batch | None:  # pragma: no cover - each policy defines it
        raise NotImplementedError


class ContinuousScheduler(Scheduler):
    """vLLM's default: prefill-only iterations when anyone can be admitted, else decode everyone."""

    name = "continuous"

    def schedule(self, now_s: float) -> Batch | None:
        batch = Batch()
        if not self.swapped:
            tokens = 0
            while self.waiting and self.admitted < self.max_seqs:
                r = self.waiting[0]
                if tokens + r.known > self.max_batch_tokens or not self._admit(r):
                    break
                self.waiting.popleft()
                if r.first_scheduled_s != r.first_scheduled_s:  # NaN: never scheduled before
                    r.first_scheduled_s = now_s
                batch.prefill.append((r, r.known, 0))
                tokens += r.known
                self.prefilling.append(r)
            if batch.prefill:
                batch.new_tokens = tokens
                return batch
        if not self._decodes(batch):
            self._swap_in(batch)
        return batch if len(batch) else None


class ChunkedScheduler(Scheduler):
    """Sarathi-Serve: decodes first, then prefill chunks up to the token budget, in one batch."""

    name = "chunked"

    def schedule(self, now_s: float) -> Batch | None:
        batch = Batch()
        if not self._decodes(batch):
            self._swap_in(batch)
        budget = self.max_batch_tokens - batch.new_tokens
        for r in self.prefilling:  # partial prefills, in admission order
            if budget <= 0:
                break
            n = min(r.pending, budget)
            batch.prefill.append((r, n, r.computed))
            budget -= n
        while budget > 0 and self.waiting and self.admitted < self.max_seqs:
            r = self.waiting[0]
            if not self._admit(r):
                break
            self.waiting.popleft()
            if r.first_scheduled_s != r.first_scheduled_s:
                r.first_scheduled_s = now_s
            n = min(r.known, budget)
            batch.prefill.append((r, n, 0))
            budget -= n
            self.prefilling.append(r)
        batch.new_tokens = self.max_batch_tokens - budget
        return batch if len(batch) else None


class StaticScheduler(Scheduler):
    """A batch of up to ``max_seqs`` padded to its longest prompt, run until its longest output ends.

    Blocks for every request's prompt + output are taken up front (a static server reserves the
    maximum length, Kwon et al. 2023 §3); the cost of each step is that of the padded batch.
    """

    name = "static"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._group: list[Request] = []
        self._pad_prompt = 0
        self._steps = 0  # forward passes done by the current group
        self._steps_total = 0

    def schedule(self, now_s: float) -> Batch | None:
        batch = Batch()
        if not self._group:
            while self.waiting and len(self._group) < self.max_seqs:
                r = self.waiting[0]
                if not self.bm.can_admit(r.prompt_len + r.output_len):
                    break
                self.bm.grow(r.rid, r.prompt_len + r.output_len)
                self.waiting.popleft()
                r.first_scheduled_s = now_s
                self._group.append(r)
            if not self._group:
                return None
            self.running = list(self._group)
            self._pad_prompt = max(r.prompt_len for r in self._group)
            self._steps = 0
            self._steps_total = max(r.output_len for r in self._group)
        b = len(self._group)
        if self._steps == 0:
            batch.padded = (b, self._pad_prompt, 0)
            batch.new_tokens = b * self._pad_prompt
        else:
            batch.padded = (b, 1, self._pad_prompt + self._steps - 1)
            batch.new_tokens = b
        return batch

    def run_of_decodes(self, step_time, gap_s: float):
        return None  # its steps are padded; each is applied on its own

    def complete(self, batch: Batch, end_s: float, accepted=None) -> list[Request]:
        for r in self._group:
            if r.generated < r.output_len:
                r.generated += 1
                r.computed = r.prompt_len + r.generated - 1
                if r.generated == 1:
                    r.first_token_s = end_s
        self._steps += 1
        if self._steps < self._steps_total:
            return []
        finished = self._group
        for r in finished:  # all responses return together, at the end of the batch
            r.finish_s = end_s
            self.bm.free(r.rid)
        self._group, self.running = [], []
        return finished


def make_scheduler(name: str, blocks: BlockManager, **options) -> Scheduler:
    kinds = {"continuous": ContinuousScheduler, "chunked": ChunkedScheduler, "static": StaticScheduler}
    if name not in kinds:
        raise ValueError(f"scheduler: {name!r}; allowed: {', '.join(SCHEDULERS)}")
    return kinds[name](blocks, **options)


__all__ = ["Batch", "PREEMPTION", "SCHEDULERS", "Scheduler", "make_scheduler"]
