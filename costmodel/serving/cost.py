"""Each iteration's time, from the whole-model step predictor, cached by batch composition.

The simulator's hot spot is asking ``costmodel.step.predict_batch`` for every forward pass (about
10 ms a call; ~0.1 ms a batch when many batches go in one call, its leading axes). So:

1. Each batch is reduced to a key, predicted once. The decode requests become ``n`` requests of
   one context, their mean (the K/V they read and the keys they attend, both linear in each
   request's context, are kept); each count (decode requests, mean context, each prefill chunk's
   new tokens and context) is rounded to ``resolution_bits`` significant bits (6: within 1/64 =
   1.6%; counts below 64 exactly). That is the approximation: a step is predicted for a batch up to
   1.6% off in each count, with its decode contexts evened out. ``resolution_bits=None`` keys every
   distinct batch exactly.
2. Keys are predicted many at a time: a *discovery* pass runs the simulation with a rough stand-in
   for unseen keys (interpolated from a small grid of decode-only and prefill-only batches the
   predictor was asked for first) and collects them; they are then predicted in one vectorized
   call, and the simulation re-run with them. It stops when a pass's steps took the stand-in at most
   ``stand_in_share`` of the time (default 2%) or after ``max_passes`` (3); that pass is reported,
   with how many of its steps took the stand-in and how far the stand-in was from the predictor
   on those keys (``stats()``; on Llama-3-8B / H200 runs its median error was 1.4%, its largest 6%).

Steps holding a prefill chunk may have their own predictor (``predict_prefill``): vLLM's V0 engine
and our GPU loop replay decode-only steps as CUDA graphs and launch the others eagerly.
Speculative decoding adds gamma draft steps over the decode requests (1 new token each) and one
draft pass over the prefill chunks; the target verifies 1 + gamma tokens per decode request.
The serving engine's own host time between forward passes (``host``: scheduling, building and
copying the step's inputs; ``costmodel.serving.engine_host``) is added to each step, outside the
cache. Swapping adds the blocks copied over the host link at ``swap_bandwidth_Bps``. ``comm(tokens)`` adds a
step's tensor-parallel communication (the step predictor counts compute and memory only), e.g. two
all-reduces of tokens x d_model activations per layer (Shoeybi et al. 2019 §3).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

Predict = Callable[[np.ndarray, np.ndarray], object]  # (new_tokens, context_lens) -> seconds (per leading row)


def quantize(x: int, bits: int | None) -> int:
    """``x`` rounded to ``bits`` significant bits (exact below 2^bits): relative error <= 2^-bits."""
    if bits is None or x < (1 << bits):
        return x
    shift = x.bit_length() - bits
    return ((x + (1 << (shift - 1))) >> shift) << shift


def step_predictor(model, gpu, **options) -> Predict:
    """(new_tokens, context_lens) -> seconds of each forward pass, from ``costmodel.step.predict_batch``
    (options: dtype, tensor_parallel, launch, ...); arrays (batches, requests) give one time a row."""
    from costmodel.step import predict_batch

    def predict(new_tokens: np.ndarray, context_lens: np.ndarray):
        return predict_batch(model, gpu, new_tokens=new_tokens, context_lens=context_lens, **options).time_s

    return predict


class StepCost:
    """Seconds of a scheduler's ``Batch`` (module docstring). ``vectorized``: ``predict`` takes arrays
    (batches, requests) padded with new = 0, context = 0 and returns one time a row."""

    def __init__(self, predict: Predict, *, vectorized: bool = False, resolution_bits: int | None = 6,
                 draft: Predict | None = None, gamma: int = 0, swap_block_bytes: float = 0.0,
                 swap_bandwidth_Bps: float | None = None, comm=None, predict_prefill: Predict | None = None,
                 draft_prefill: Predict | None = None, host=None):
        if resolution_bits is not None and not (isinstance(resolution_bits, int) and resolution_bits >= 1):
            raise ValueError(f"resolution_bits: {resolution_bits!r}; a whole number >= 1, or None for exact")
        self.predict, self.draft, self.vectorized = predict, draft, vectorized
        self.comm = comm  # tokens (array) -> seconds of the step's TP communication, or None
        self.host = host  # (decode_only, requests, new tokens) -> the engine's host seconds, or None
        # steps holding prefill chunks may be launched otherwise (vLLM V0: CUDA graphs for decode only)
        self.predict_prefill = predict_prefill or predict
        self.draft_prefill = draft_prefill or draft
        self.gamma = gamma
        self.bits = resolution_bits
        self.swap_block_bytes = swap_block_bytes
        self.swap_bandwidth_Bps = swap_bandwidth_Bps
        self._cache: dict = {}
        self.discover = False  # True: unseen keys get the stand-in and are queued
        self.missed: dict = {}
        self._grid = None
        self.calls = 0
        self.lookups = 0
        self.predict_wall_s = 0.0
        self.passes: list[int] = []  # new keys met by each discovery pass
        self.stand_in_steps = 0  # steps of the current pass that took the stand-in
        self.stand_in_error: dict = {}  # |stand-in / predictor - 1| over the last pass's new keys

    # ------------------------------------------------------------ keys and their batches

    def _key(self, batch) -> tuple:
        q = self.bits
        if batch.padded is not None:
            b, new, ctx = batch.padded
            if new > 1:  # the padded prefill: b prompts of ``new`` tokens
                return (0, 0, ((quantize(new, q), 0),) * b)
            return (quantize(b, q), quantize(ctx, q), ())
        n = len(batch.decode)
        mean_ctx = quantize(round(batch.decode_ctx_sum / n), q) if n else 0
        chunks = tuple(sorted((quantize(m, q), quantize(c, q)) for _, m, c in batch.prefill))
        return (quantize(n, q), mean_ctx, chunks)

    @staticmethod
    def _rows(keys, decode_new: int, with_chunks: bool = True, with_decodes: bool = True):
        """(keys, requests) arrays of new tokens and contexts, padded with zeros."""
        width = max(1, max((k[0] * with_decodes + len(k[2]) * with_chunks for k in keys), default=1))
        new = np.zeros((len(keys), width), dtype=np.int64)
        ctx = np.zeros((len(keys), width), dtype=np.int64)
        for i, (n, c, chunks) in enumerate(keys):
            j = 0
            if with_decodes and n:
                new[i, :n], ctx[i, :n] = decode_new, c
                j = n
            if with_chunks:
                for m, cc in chunks:
                    new[i, j], ctx[i, j] = m, cc
                    j += 1
        return new, ctx

    def _call(self, fn, new, ctx) -> np.ndarray:
        self.calls += 1
        if self.vectorized:
            return np.broadcast_to(np.asarray(fn(new, ctx), dtype=np.float64), (new.shape[0],)).copy()
        return np.array([float(fn(n[n > 0] if np.any(n > 0) else n[:1], c[n > 0] if np.any(n > 0) else c[:1]))
                         for n, c in zip(new, ctx)])

    def _predict_keys(self, keys: list) -> np.ndarray:
        t0 = time.perf_counter()
        t = np.zeros(len(keys))
        mixed = [i for i, k in enumerate(keys) if k[2]]  # holding a prefill chunk: ``predict_prefill``
        pure = [i for i, k in enumerate(keys) if not k[2]]
        for idx, fn in ((pure, self.predict), (mixed, self.predict_prefill)):
            if idx:
                t[idx] = self._call(fn, *self._rows([keys[i] for i in idx], 1 + self.gamma))
        if self.draft is not None and self.gamma:
            dec = [i for i, k in enumerate(keys) if k[0]]
            if dec:
                t[dec] += self.gamma * self._call(self.draft, *self._rows([keys[i] for i in dec], 1, with_chunks=False))
            if mixed:
                rows = self._rows([keys[i] for i in mixed], 1, with_decodes=False)
                t[mixed] += self._call(self.draft_prefill, *rows)
        if self.comm is not None:  # tensor-parallel collectives of the step, by its tokens
            tokens = np.array([n * (1 + self.gamma) + sum(m for m, _ in chunks) for n, _, chunks in keys],
                              dtype=np.float64)
            t = t + np.broadcast_to(np.asarray(self.comm(tokens), dtype=np.float64), t.shape)
        self.predict_wall_s += time.perf_counter() - t0
        return t

    # ------------------------------------------------------------ discovery passes

    def seed_grid(self, max_seqs: int, max_ctx: int, max_tokens: int) -> None:
        """Predict decode-only batches on a (requests x context) grid and single prefills on a token
        grid, in one call each: the stand-in a discovery pass interpolates for unseen keys."""
        ns = np.unique(np.geomspace(1, max(max_seqs, 1), 12).round().astype(int))
        cs = np.unique(np.geomspace(16, max(max_ctx, 32), 10).round().astype(int))
        ts = np.unique(np.geomspace(1, max(max_tokens, 2), 14).round().astype(int))
        dec = self._predict_keys([(int(n), int(c), ()) for n in ns for c in cs]).reshape(len(ns), len(cs))
        pre = self._predict_keys([(0, 0, ((int(t), 0),)) for t in ts])
        self._grid = (ns, cs, dec, ts, pre)

    def _stand_in(self, key) -> float:
        """Decode-only: bilinear in (requests, context) on the grid; with prefill chunks, a prefill of
        all the batch's new tokens plus the decodes' context-dependent part."""
        ns, cs, dec, ts, pre = self._grid
        n, c, chunks = key
        look = 1 + self.gamma

        def d(n_, c_):
            row = np.array([np.interp(c_, cs, dec[i]) for i in range(len(ns))])
            return float(np.interp(n_, ns, row))

        if not chunks:
            return d(n, c) if n else 0.0
        tokens = n * look + sum(m for m, _ in chunks)
        t = float(np.interp(tokens, ts, pre))
        return t + (max(0.0, d(n, c) - d(n, cs[0])) if n else 0.0)

    def resolve(self) -> int:
        """Predict the keys the last discovery pass queued, in one call; how many there were."""
        keys = list(self.missed)
        self.passes.append(len(keys))
        if keys:
            exact = self._predict_keys(keys)
            err = np.abs(np.array([self.missed[k] for k in keys]) / exact - 1)
            self.stand_in_error = {"p50": float(np.median(err)), "max": float(err.max()), "keys": len(keys)}
            for k, t in zip(keys, exact):
                self._cache[k] = float(t)
        else:
            self.stand_in_error = {}
        self.missed = {}
        return len(keys)

    def start_pass(self, discover: bool) -> None:
        self.discover = discover
        self.stand_in_steps = 0

    # ------------------------------------------------------------ the lookup

    def decode_only(self, n: int, ctx_sum: int) -> float:
        """Seconds of a step of ``n`` decode requests holding ``ctx_sum`` cached tokens in all."""
        q = self.bits
        t = self._lookup((quantize(n, q), quantize(round(ctx_sum / n), q), ()))
        return t + (self.host(True, n, n * (1 + self.gamma)) if self.host else 0.0)

    def __call__(self, batch) -> float:
        t = self._lookup(self._key(batch))
        if self.host:
            decode_only = not batch.prefill and (batch.padded is None or batch.padded[1] == 1)
            n = len(batch) if batch.padded is None else batch.padded[0]
            t += self.host(decode_only, n, batch.new_tokens)
        if batch.swap_blocks:
            if not self.swap_bandwidth_Bps:
                raise ValueError("swap_bandwidth_Bps: preemption='swap' copies blocks to host memory; give the "
                                 "host link's bandwidth in bytes per second (e.g. PCIe 5.0 x16)")
            t += batch.swap_blocks * self.swap_block_bytes / self.swap_bandwidth_Bps
        return t

    def _lookup(self, key) -> float:
        self.lookups += 1
        t = self._cache.get(key)
        if t is None:
            if self.discover:
                self.stand_in_steps += 1
                t = self.missed.get(key)
                if t is None:
                    t = self.missed[key] = self._stand_in(key)
            else:
                t = self._cache[key] = float(self._predict_keys([key])[0])
        return t

    def stats(self) -> dict:
        return {"lookups": self.lookups, "predictor_calls": self.calls, "distinct_batches": len(self._cache),
                "predictor_wall_s": self.predict_wall_s, "resolution_bits": self.bits,
                "discovery_passes_new_keys": list(self.passes), "stand_in_steps": self.stand_in_steps,
                "stand_in_error": self.stand_in_error}


__all__ = ["Predict", "StepCost", "quantize", "step_predictor"]
