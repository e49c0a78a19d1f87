"""torch's math backend's timing terms (catalog [MATH], simulators/implementations/gemv.py) and the per-variant
forward efficiency of a fused implementation: constructed cases with hand counts.

Expected values are worked out by hand from the structure torch's math path has ([MATH]: K scaled after the
GQA expand; [NCU]'s kernel list) and from the terms' definitions (time = max(bytes / bandwidth, rows x row
time) + fixed; the host issue of kernels shorter than their launch), not read from this code's output.
"""

import pytest

from hardware_specs import load_gpu
from simulators.config import AttentionConfig, make_config
from simulators.implementations import IMPLEMENTATIONS, ops, run
from simulators.implementations.params import Basis, kernel_params, timing_basis
from simulators.memory_ops import memory_op_time

H200 = "h200-sxm-141gb-measured"


@pytest.fixture(scope="module")
def spec():
    return load_gpu(H200)


def _decode(b, h, hk, l_, d):
    return make_config(AttentionConfig, batch=b, heads=h, kv_heads=hk, seq_len=1, kv_len=l_, head_dim=d, dtype="bf16")


def _kernels(spec, cfg, overrides=None):
    counts = run.count(spec, "torch-math", cfg, "fwd")
    ks, overhead = run.time(spec, "torch-math", counts, cfg, "fwd", overrides=overrides)
    return {k.name: k for k in ks}, ks, overhead


def test_math_scales_k_after_the_gqa_expand(spec):
    """key_expanded.transpose(-2, -1) * scale: K is scaled over B H L d (fp32, read and written), Q over
    B H N d; with GQA 8 that is 8x the bytes of scaling K before the expand."""
    b, h, hk, l_, d = 2, 32, 4, 4096, 128
    k, _, _ = _kernels(spec, _decode(b, h, hk, l_, d))
    assert k["scale_k"].hbm_bytes == 2 * 4 * b * h * l_ * d
    assert k["scale_q"].hbm_bytes == 2 * 4 * b * h * 1 * d


def test_math_casts_and_scales_are_their_memory_op_families(spec):
    """The bf16 -> fp32 upcast of K and V (2 + 4 bytes an element, two kernels) on the cast_up curve, the
    scale of the expanded K (4 + 4 bytes) on the vectorized one."""
    b, h, hk, l_, d = 4, 32, 8, 2048, 128
    k, _, _ = _kernels(spec, _decode(b, h, hk, l_, d))
    kv = b * hk * l_ * d
    assert k["upcast_kv"].time_s == pytest.approx(float(memory_op_time(spec, 2 * 6 * kv, kernels=2, family="cast_up")))
    assert k["scale_k"].time_s == pytest.approx(float(memory_op_time(spec, 8 * b * h * l_ * d, family="vectorized")))


def test_gemv_rows_bind_short_rows_and_bytes_long_ones(spec):
    """The M = 1 fp32 products: B H L rows x gemv_row_s when that is longer than their bytes at DRAM
    bandwidth; with a row time near zero the bytes bind and the row bound does not show."""
    b, h, l_, d = 8, 32, 4096, 64
    cfg = _decode(b, h, h, l_, d)
    fixed = kernel_params(timing_basis(spec), "torch-math", "gemv_fwd", "simt").kernel_fixed_s
    slow, _, _ = _kernels(spec, cfg, {"gemv_row_s": 1e-9})
    for name in ("qk_bmm", "pv_bmm"):
        assert slow[name].bound == "gemv rows"
        assert slow[name].time_s == pytest.approx(b * h * l_ * 1e-9 + fixed)
    fast, _, _ = _kernels(spec, cfg, {"gemv_row_s": 1e-14})
    bytes_s = fast["qk_bmm"].hbm_bytes / spec.hbm_bandwidth_Bps
    assert fast["qk_bmm"].bound != "gemv rows"
    assert fast["qk_bmm"].time_s >= bytes_s
    # a prefill's products are GEMMs (N > 1): no row bound
    pre = make_config(AttentionConfig, batch=1, heads=8, seq_len=512, head_dim=64, dtype="bf16")
    roles = dict((c.name, role) for c, role in run.count(spec, "torch-math", pre, "fwd"))
    assert roles["qk_bmm"] == "gemm_fwd"


def test_math_host_issue_shows_where_kernels_are_shorter_than_their_launch(spec):
    """A tiny decode: every kernel ends before the host has issued the next, so the call takes the host's
    issue time of all its kernels plus the last kernel: sum(host) + gpu_last, beyond the fitted call cost."""
    cfg = _decode(1, 4, 4, 64, 64)
    _, ks, overhead = _kernels(spec, cfg)
    steps = ops.steps_by_name(IMPLEMENTATIONS["torch-math"])
    launches = [steps[(k.name, "fwd")].launches for k in ks]  # upcast_kv: two kernels, one a tensor
    host = [ops.host_per_launch_s(spec, steps[(k.name, "fwd")], False) for k, n in zip(ks, launches) for _ in range(n)]
    gpu = [k.time_s / n for k, n in zip(ks, launches) for _ in range(n)]
    assert all(g < min(host) for g in gpu)  # the constructed case is host-bound throughout
    host_fwd_s = spec.implementations.value("torch-math", "host_fwd_s")
    assert overhead - host_fwd_s == pytest.approx(sum(host) + gpu[-1] - sum(gpu))


def test_efficient_forward_efficiency_is_per_kernel_variant():
    """[MEFF]'s forward is three kernels by head_dim (<= 64, <= 128, <= 256): each its own fitted share;
    a basis without the per-variant shares (per-architecture defaults) falls back to the one share."""
    entry = IMPLEMENTATIONS["torch-efficient"]
    by_d = {d: run.variant(entry, make_config(AttentionConfig, batch=1, heads=1, seq_len=64, head_dim=d, dtype="bf16"))
            for d in (32, 64, 96, 128, 256)}
    assert by_d == {32: "d64", 64: "d64", 96: "d128", 128: "d128", 256: "d256"}
    common = {("gpu", n): 1e-6 for n in ("dram_latency_s", "l2_latency_s", "kernel_fixed_s")}
    own = Basis("t", {**common, ("torch-efficient", "fwd_efficiency"): 0.5,
                      ("torch-efficient", "fwd_efficiency_d128"): 0.3, ("torch-efficient", "overlap"): 0.2})
    assert kernel_params(own, "torch-efficient", "fwd", "mma.sync", variant="d128").tensor_efficiency == 0.3
    assert kernel_params(own, "torch-efficient", "fwd", "mma.sync", variant="d64").tensor_efficiency == 0.5
    cfg = make_config(AttentionConfig, batch=1, heads=1, seq_len=64, head_dim=128, dtype="bf16")
    assert run.variant(IMPLEMENTATIONS["torch-cudnn"], cfg) is None  # one forward share
    assert run.variant(IMPLEMENTATIONS["torch-cudnn"], cfg, "bwd") == "d128"  # a backward share per head_dim
