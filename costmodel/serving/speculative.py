"""Speculative decoding: a draft model proposes gamma tokens, the target checks them in one pass.

Leviathan, Kalman and Matias 2023, "Fast Inference from Transformers via Speculative Decoding":
with each draft token accepted independently with probability alpha (their alpha = E[beta], the
expected acceptance rate), the tokens one target step emits follow a capped geometric distribution,
P(k) = alpha^(k-1) (1 - alpha) for k = 1..gamma and P(gamma + 1) = alpha^gamma, whose mean is

    E[tokens per target step] = (1 - alpha^(gamma+1)) / (1 - alpha)        (their Eq. 1)

(gamma + 1 in the limit alpha -> 1; 1 at alpha = 0). One step costs gamma draft steps plus one
target pass over 1 + gamma tokens; with step times measured or predicted for both, the walltime
speedup over plain decoding is

    speedup = E[tokens] * t_target(1 token) / (gamma * t_draft + t_target(1 + gamma tokens))

which is their Theorem 3.8, (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)), when the verify pass
costs as much as a one-token step and c = t_draft / t_target.
"""

from __future__ import annotations

import numpy as np


def _check(alpha, gamma):
    a = np.asarray(alpha, dtype=np.float64)
    if np.any(~np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"alpha: {alpha!r}; an acceptance rate in [0, 1]")
    g = np.asarray(gamma)
    if g.dtype.kind not in "iu" or np.any(g < 0):
        raise ValueError(f"gamma: {gamma!r}; a whole number of draft tokens >= 0")
    return a, g


def expected_tokens_per_step(alpha, gamma):
    """(1 - alpha^(gamma+1)) / (1 - alpha), gamma + 1 at alpha = 1 (Leviathan et al. 2023, Eq. 1);
    arrays broadcast."""
    a, g = _check(alpha, gamma)
    one = np.isclose(a, 1.0, rtol=0, atol=1e-12)
    safe = np.where(one, 0.5, a)
    out = np.where(one, g + 1.0, (1.0 - safe ** (g + 1)) / (1.0 - safe))
    return out.item() if out.ndim == 0 else out


def speculative_speedup(alpha, gamma, t_target_s, t_draft_s, t_verify_s=None):
    """Walltime speedup of speculative over plain decoding (module docstring): E[tokens] x
    t_target / (gamma t_draft + t_verify); ``t_verify_s`` (the target's pass over 1 + gamma tokens)
    defaults to ``t_target_s`` (Theorem 3.8's assumption)."""
    _, g = _check(alpha, gamma)
    verify = t_target_s if t_verify_s is None else t_verify_s
    out = np.asarray(expected_tokens_per_step(alpha, gamma)) * t_target_s / (g * t_draft_s + verify)
    return out.item() if out.ndim == 0 else out


class AcceptanceSampler:
    """Tokens each speculative step emits: draws of the capped geometric law above, seeded, in bulk."""

    def __init__(self, alpha: float, gamma: int, seed: int = 0, chunk: int = 65536):
        _check(alpha, gamma)
        self.alpha, self.gamma = float(alpha), int(gamma)
        self._rng = np.random.default_rng(seed)
        self._chunk = chunk
        self._buf: list[int] = []

    def _refill(self) -> None:
        if self.alpha >= 1.0:
            draws = np.full(self._chunk, self.gamma + 1)
        elif self.alpha <= 0.0:
            draws = np.ones(self._chunk, dtype=np.int64)
        else:  # geometric(p = 1 - alpha) counts trials to the first rejection: k w.p. alpha^(k-1)(1-alpha)
            draws = np.minimum(self._rng.geometric(1.0 - self.alpha, size=self._chunk), self.gamma + 1)
        self._buf = draws.tolist()[::-1]

    def __call__(self, _request=None) -> int:
        if not self._buf:
            self._refill()
        return self._buf.pop()


__all__ = ["AcceptanceSampler", "expected_tokens_per_step", "speculative_speedup"]
