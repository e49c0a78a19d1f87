"""Serving simulation: requests arriving at a model on a GPU, batched by a scheduler over a paged KV
cache, each step timed by the whole-model step predictor; TTFT, TPOT, throughput and goodput out.

``simulate_serving`` (``simulate``) is the entry point; ``max_rate_at_slo`` and ``search_configs``
(``search``) look for the highest load a setup carries within latency targets; ``speculative`` holds
the speculative-decoding arithmetic.
"""

from costmodel.serving.simulate import ServingResult, Speculative, simulate_serving
from costmodel.serving.speculative import expected_tokens_per_step, speculative_speedup
from costmodel.serving.workload import Workload, load_trace, parse_dist, poisson_workload

__all__ = [
    "ServingResult", "Speculative", "Workload", "expected_tokens_per_step", "load_trace", "parse_dist",
    "poisson_workload", "simulate_serving", "speculative_speedup",
]
