"""Each iteration's time, from the whole-model step predictor, cached by batch composition.

The simulator's hot spot is asking ``costmodel.step.predict_batch`` for every forward pass. A long run
repeats nearly the same batch many times, so each batch is reduced to a key and each key predicted
once:

- the decode requests become ``n`` requests of the same context, their mean (so the total K/V read
  by decode attention, which is linear in each request's context, is kept);
- each count (decode requests, mean context, each prefill chunk's new tokens and context) is
  rounded to ``resolution_bits`` significant bits (6: within 1/64 = 1.6%; counts below
  2^resolution_bits exactly).

That is the approximation: a step is predicted for a batch up to 1.6% off in each count, and with
its decode contexts evened out. ``resolution_bits=None`` predicts every distinct batch exactly (slow).
Speculative decoding adds gamma draft steps over the decode requests (1 new token each) and one
draft pass over the prefill chunks, and the target verifies 1 + gamma tokens per decode request.
Swapping adds the blocks copied over the host link at ``swap_bandwidth_Bps``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

Predict = Callable[[np.ndarray, np.ndarray], float]  # (new_tokens, context_lens) -> seconds


def quantize(x: int, bits: int | None) -> int:
    """``x`` rounded to ``bits`` significant bits (exact below 2^bits): relative error <= 2^-bits."""
    if bits is None or x < (1 << bits):
        return x
    shift = x.bit_length() - bits
    return ((x + (1 << (shift - 1))) >> shift) << shift


def step_predictor(model, gpu, **options) -> Predict:
    """(new_tokens, context_lens) -> seconds of one forward pass, from ``costmodel.step.predict_batch``
    (options: dtype, tensor_parallel, launch, ...)."""
    from costmodel.step import predict_batch

    def predict(new_tokens: np.ndarray, context_lens: np.ndarray) -> float:
        return float(np.sum(predict_batch(model, gpu, new_tokens=new_tokens, context_lens=context_lens,
                                          **options).time_s))

    return predict


class StepCost:
    """Seconds of a scheduler's ``Batch``; one predictor call per distinct key (module docstring)."""

    def __init__(self, predict: Predict, *, resolution_bits: int | None = 6, draft: Predict | None = None,
                 gamma: int = 0, swap_block_bytes: float = 0.0, swap_bandwidth_Bps: float | None = None):
        if resolution_bits is not None and not (isinstance(resolution_bits, int) and resolution_bits >= 1):
            raise ValueError(f"resolution_bits: {resolution_bits!r}; a whole number >= 1, or None for exact")
        self.predict = predict
        self.draft = draft
        self.gamma = gamma
        self.bits = resolution_bits
        self.swap_block_bytes = swap_block_bytes
        self.swap_bandwidth_Bps = swap_bandwidth_Bps
        self._cache: dict = {}
        self.calls = 0
        self.lookups = 0
        self.predict_wall_s = 0.0

    def _key(self, batch) -> tuple:
        q = self.bits
        if batch.padded is not None:
            b, new, ctx = batch.padded
            return ("padded", quantize(b, q), quantize(new, q), quantize(ctx, q))
        n = len(batch.decode)
        mean_ctx = quantize(round(batch.decode_ctx_sum / n), q) if n else 0
        chunks = tuple(sorted((quantize(m, q), quantize(c, q)) for _, m, c in batch.prefill))
        return (quantize(n, q), mean_ctx, chunks)

    def _arrays(self, key: tuple, decode_new: int) -> tuple[np.ndarray, np.ndarray]:
        n, ctx, chunks = key
        new = np.array([decode_new] * n + [m for m, _ in chunks], dtype=np.int64)  # (requests,)
        context = np.array([ctx] * n + [c for _, c in chunks], dtype=np.int64)
        return new, context

    def _predict(self, key: tuple) -> float:
        t0 = time.perf_counter()
        self.calls += 1
        if key[0] == "padded":
            _, b, new, ctx = key
            t = self.predict(np.full(b, new, dtype=np.int64), np.full(b, ctx, dtype=np.int64))
        else:
            t = self.predict(*self._arrays(key, 1 + self.gamma))
            if self.draft is not None and self.gamma:
                n, ctx, chunks = key
                if n:
                    t += self.gamma * self.draft(np.ones(n, dtype=np.int64), np.full(n, ctx, dtype=np.int64))
                if chunks:
                    t += self.draft(*self._arrays((0, 0, chunks), 1))
        self.predict_wall_s += time.perf_counter() - t0
        return t

    def __call__(self, batch) -> float:
        self.lookups += 1
        key = self._key(batch)
        t = self._cache.get(key)
        if t is None:
            t = self._cache[key] = self._predict(key)
        if batch.swap_blocks:
            if not self.swap_bandwidth_Bps:
                raise ValueError("swap_bandwidth_Bps: preemption='swap' copies blocks to host memory; give the "
                                 "host link's bandwidth in bytes per second (e.g. PCIe 5.0 x16)")
            t += batch.swap_blocks * self.swap_block_bytes / self.swap_bandwidth_Bps
        return t

    def stats(self) -> dict:
        return {"lookups": self.lookups, "predictor_calls": self.calls, "distinct_batches": len(self._cache),
                "predictor_wall_s": self.predict_wall_s, "resolution_bits": self.bits}


__all__ = ["Predict", "StepCost", "quantize", "step_predictor"]
