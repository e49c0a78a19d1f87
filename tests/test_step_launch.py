"""The launch / host terms of a step (costmodel/step/launch.py) on constructed cases, and their fit.

Constructed: a CUDA-graph step of n kernels costs exactly n x graph_per_kernel_s more than with no
in-graph idle; an eager step whose GPU work is negligible takes its host time, kernels x the host cost
of a kernel plus layers x the per-block cost; a training step carries no per-block cost. Fit: the
calibrated spec's step terms are what step_calib_fit gets from the committed calibration run, whose
configurations share no shape with a validated preset.
"""

from __future__ import annotations

import pytest

from costmodel.models import load_model
from costmodel.step import predict_step
from costmodel.validation import step_grids
from hardware_specs import load_gpu
from hardware_specs.op_timing import memory_ops_model


@pytest.fixture(scope="module")
def spec():
    return load_gpu("h200-sxm-141gb-measured")


def _with_launch(spec, **fields):
    mem = memory_ops_model(spec)
    return spec.model_copy(update={"memory_ops": mem.model_copy(update={"launch": mem.launch.model_copy(update=fields)})})


def _fast_gpu(spec):
    """The same spec with GPU work made negligible: memory ops at 1e-15 s latency and 1e24 B/s, GEMMs
    and attention at 1e9 times the tensor peak (the host costs are untouched)."""
    mem = memory_ops_model(spec)
    mem = mem.model_copy(update={"latency_s": 1e-15, "bandwidth_Bps": 1e24, "l2_bandwidth_Bps": 1e24, "families": {}})
    g = spec.gemm.model_copy(update={"overhead_s": 0.0, "bandwidth_fraction": 1.5,
                                     "efficiency": {k: 1.0 for k in spec.gemm.efficiency}})
    upd = {"memory_ops": mem, "gemm": g, "hbm_bandwidth_Bps": spec.hbm_bandwidth_Bps * 1e12,
           "peak_flops_per_s": {k: v * 1e9 for k, v in spec.peak_flops_per_s.items()}}
    return spec.model_copy(update=upd)


@pytest.mark.parametrize("model", ["tinyllama-1.1b", "gpt2-medium"])
def test_graph_of_n_kernels_costs_n_gaps_more(spec, model):
    g = 7.5e-7
    a = predict_step(model, _with_launch(spec, graph_per_kernel_s=0.0), "decode", batch=4, seq_len=1000)
    b = predict_step(model, _with_launch(spec, graph_per_kernel_s=g), "decode", batch=4, seq_len=1000)
    assert a.kernels == b.kernels and a.launch == b.launch == "graph"
    assert b.time_s - a.time_s == pytest.approx(g * a.kernels, rel=1e-9)
    # no gap: one replay's launch plus the kernels' GPU time, nothing else
    assert a.time_s == pytest.approx(a.gpu_time_s + memory_ops_model(spec).launch.graph_launch_s, rel=1e-12)


def test_eager_host_bound_step_is_kernels_times_host_cost_plus_blocks(spec):
    h, blk = 2.0e-5, 3.0e-4
    s = _with_launch(_fast_gpu(spec), host_per_kernel_s=h, host_by_family={}, host_per_library_call_s=None,
                     host_attention_s=None, host_per_block_s=blk, host_per_kernel_autograd_s=None)
    cfg = load_model("tinyllama-1.1b")
    r = predict_step(cfg, s, "prefill", batch=1, seq_len=128)
    assert r.gpu_time_s < 1e-3 * r.time_s  # GPU work negligible: the host binds
    # every op costs h per kernel (GEMM and SDPA calls too: no library-call cost set), each block blk more
    assert r.time_s == pytest.approx(r.kernels * h + cfg.n_layers * blk, rel=1e-3)
    no_block = predict_step(cfg, _with_launch(s, host_per_block_s=None), "prefill", batch=1, seq_len=128)
    assert r.time_s - no_block.time_s == pytest.approx(cfg.n_layers * blk, rel=1e-3)


def test_training_step_has_no_per_block_host_cost(spec):
    a = predict_step("gpt2-medium", _with_launch(spec, host_per_block_s=0.0), "train", batch=1, seq_len=256)
    b = predict_step("gpt2-medium", _with_launch(spec, host_per_block_s=1e-3), "train", batch=1, seq_len=256)
    assert a.time_s == pytest.approx(b.time_s, rel=1e-12)


def test_calibration_configs_are_not_validated_presets():
    from costmodel.validation.step_calib_run import CALIB_CONFIGS

    shape = lambda c: (c.d_model, c.n_layers, c.n_heads, c.vocab_size)  # noqa: E731
    validated = {shape(load_model(m)) for m in step_grids.MODEL_RUNS}
    widths = {(load_model(m).d_model, load_model(m).norm_type) for m in step_grids.MODEL_RUNS}
    for cfg, *_ in CALIB_CONFIGS:  # no validated shape; no validated width in the same architecture
        assert shape(cfg) not in validated and (cfg.d_model, cfg.norm_type) not in widths
    styles = {cfg.norm_type for cfg, *_ in CALIB_CONFIGS}
    assert styles == {"rmsnorm", "layernorm"}  # llama- and GPT-2-style both


def test_calibrated_step_terms_are_the_fit_of_the_committed_calibration_run(spec):
    from costmodel.validation.step_calib_fit import fit_step_launch, load

    f = fit_step_launch(load(), spec)
    launch = memory_ops_model(spec).launch
    assert launch.graph_per_kernel_s == pytest.approx(f["graph_per_kernel_s"], rel=1e-9)
    assert launch.host_per_block_s == pytest.approx(f["host_per_block_s"], rel=1e-9)
    assert launch.host_per_kernel_autograd_s == pytest.approx(f["host_per_kernel_autograd_s"], rel=1e-9)
    assert launch.step_fit is not None and launch.step_fit.gpu == "NVIDIA H200"
    # physical ranges: the profiler's inter-kernel gaps in a graph are ~0.45 us; a block's Python work
    # is tens to hundreds of microseconds; an autograd kernel tens of microseconds of host
    assert 1e-7 < launch.graph_per_kernel_s < 2e-6
    assert 5e-5 < launch.host_per_block_s < 1e-3
    assert 5e-6 < launch.host_per_kernel_autograd_s < 1e-4


def test_biased_linears_in_training_add_a_bias_cast_and_a_bias_gradient_reduction(spec):
    """GPT-2 medium, T = 1024 tokens: each of qkv, out_proj, fc, proj casts its fp32 bias (6 bytes an
    element) and reduces its bf16 output gradient over the tokens (2 bytes an element read, 4 written
    a bias element); a Llama (no biases) has neither."""
    h, f = 1024, 4096
    r = predict_step("gpt2-medium", spec, "train", batch=1, seq_len=1024)
    rows = {row.name: row for row in r.ops}
    for name, n in (("qkv", 3 * h), ("out_proj", h), ("fc", f), ("proj", h)):
        cast, grad = rows[f"{name}.bias_cast"], rows[f"{name}.bias_grad"]
        assert cast.count == 24 and cast.kernels == 24 and cast.part == "fwd"
        assert cast.bytes["hbm"] == pytest.approx(24 * 6.0 * n)
        assert grad.part == "bwd" and grad.kernels == 24
        assert grad.bytes["hbm"] == pytest.approx(24 * (1024 * n * 2.0 + 4.0 * n))
        assert f"{name}.bias_cast.grad_cast" in rows  # the bias gradient cast back to fp32
    llama = predict_step("tinyllama-1.1b", spec, "train", batch=1, seq_len=1024)
    assert not [row for row in llama.ops if "bias" in row.name]
    inference = predict_step("gpt2-medium", spec, "prefill", batch=1, seq_len=1024)
    assert not [row for row in inference.ops if "bias" in row.name]  # bf16 biases in the GEMM epilogue


def test_engine_attention_host_is_per_layer_and_call_on_the_eager_timeline():
    # deep in the host-bound regime each added second of host per layer and attention call costs one
    # second of wall time per layer and call: between 1 ms and 2 ms a call, a batch of two prompt
    # chunks and two decodes (3 calls: one per chunk, one for the decodes) grows by L x 3 x 1 ms
    from costmodel.models import load_model
    from costmodel.step import predict_batch

    L = load_model("tinyllama-1.1b").n_layers
    new, ctx = [[16, 8, 1, 1]], [[0, 0, 40, 70]]
    t1, t2 = (float(predict_batch("tinyllama-1.1b", "h200-sxm-141gb-measured", new, ctx, launch="eager",
                                  attention_host_per_call_s=a).time_s[0]) for a in (1e-3, 2e-3))
    assert t2 - t1 == pytest.approx(L * 3 * 1e-3, rel=1e-9)
    # a CUDA graph issues nothing per op from the host: the term leaves it unchanged
    g0, g1 = (float(predict_batch("tinyllama-1.1b", "h200-sxm-141gb-measured", new, ctx, launch="graph",
                                  attention_host_per_call_s=a).time_s[0]) for a in (0.0, 1e-3))
    assert g0 == g1
    # GPU-bound (a long prompt on a large model): a small host term is hidden under the GPU work
    b0, b1 = (float(predict_batch("llama2-7b", "h200-sxm-141gb-measured", [8192], [0], launch="eager",
                                  attention_host_per_call_s=a).time_s) for a in (0.0, 1e-5))
    assert b1 == pytest.approx(b0, rel=1e-6)
