"""Speculative decoding's arithmetic (Leviathan et al. 2023, Eq. 1 and Theorem 3.8) and its use in the
simulator."""

import math

import numpy as np
import pytest

from costmodel.serving import simulate_serving
from costmodel.serving.speculative import AcceptanceSampler, expected_tokens_per_step, speculative_speedup
from costmodel.serving.workload import Workload

SEED = 7


def _mean_from_distribution(alpha, gamma):
    """sum_k k P(k) with P(k) = alpha^(k-1) (1 - alpha), k <= gamma, and P(gamma + 1) = alpha^gamma."""
    return math.fsum(k * alpha ** (k - 1) * (1 - alpha) for k in range(1, gamma + 1)) + (gamma + 1) * alpha ** gamma


@pytest.mark.parametrize("gamma", [1, 3, 5, 8])
def test_leviathan_eq1_at_alpha_0_and_1(gamma):
    assert expected_tokens_per_step(0.0, gamma) == 1.0  # every draft rejected: the target's own token
    assert expected_tokens_per_step(1.0, gamma) == gamma + 1  # every draft accepted, plus the bonus token


def test_leviathan_eq1_against_the_distribution():
    rng = np.random.default_rng(SEED)
    alphas, gammas = rng.uniform(0.01, 0.99, 50), rng.integers(1, 12, 50)
    got = expected_tokens_per_step(alphas, gammas)
    want = [_mean_from_distribution(a, int(g)) for a, g in zip(alphas, gammas)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_leviathan_theorem_3_8_speedup():
    # Theorem 3.8: (1 - a^(g+1)) / ((1 - a)(g c + 1)), c = draft / target step cost
    a, g, c = 0.8, 4, 0.05
    assert speculative_speedup(a, g, 1.0, c) == pytest.approx((1 - a ** (g + 1)) / ((1 - a) * (g * c + 1)))
    # a verify pass dearer than a 1-token step lowers it in proportion
    assert speculative_speedup(a, g, 1.0, c, t_verify_s=1.5) < speculative_speedup(a, g, 1.0, c)


def test_sampler_draws_the_capped_geometric_law():
    s = AcceptanceSampler(0.7, 4, seed=SEED)
    draws = np.array([s() for _ in range(100_000)])
    assert draws.min() == 1 and draws.max() == 5
    assert draws.mean() == pytest.approx(_mean_from_distribution(0.7, 4), rel=0.01)
    assert np.mean(draws == 5) == pytest.approx(0.7 ** 4, rel=0.03)


@pytest.mark.parametrize("bad", [dict(alpha=1.2, gamma=3), dict(alpha=-0.1, gamma=3), dict(alpha=0.5, gamma=-1)])
def test_bad_speculative_arguments_name_the_field(bad):
    with pytest.raises(ValueError, match="alpha" if "alpha" in str(bad) and bad["gamma"] >= 0 else "gamma"):
        expected_tokens_per_step(**bad)


def test_simulator_emits_gamma_plus_one_tokens_per_step_at_alpha_1():
    # one request, prompt 8, 9 output tokens, every step 1 s, drafts free: the prefill emits token 1 at
    # t1, then each verify step emits 4 (gamma 3 + 1): tokens 2-5 at t2, 6-9 at t3.
    w = Workload(np.array([0.0]), np.array([8]), np.array([9]), "one request")
    r = simulate_serving("llama3-8b", "h200-sxm-141gb", w, scheduler="chunked",
                         speculative=dict(draft="tinyllama-1.1b", gamma=3, alpha=1.0),
                         step_time=lambda new, ctx: 1.0, draft_step_time=lambda new, ctx: 0.0)
    assert r.requests["ttft_s"][0] == 1.0 and r.requests["e2e_s"][0] == 3.0
    assert r.metrics["tpot_s"]["mean"] == pytest.approx(2.0 / 8)
    assert r.config["speculative"]["expected_tokens_per_step"] == 4

