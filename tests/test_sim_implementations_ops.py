"""Eager attention priced op by op (simulators/implementations/ops.py), the memory-efficient backend's
gmem-output forward (d > 128), and the runner's phases: constructed cases with hand counts.

The expected values come from the op models' own formulas evaluated by hand on a constructed GEMM /
copy (gemm_time, memory_op_time are tested against their definitions in test_sim_matmul_memory_ops.py)
and from the kernel's documented structure ([MEFF] in catalog.yaml), not from this code's output.
"""

import pytest

from costmodel.validation.implementations import gpu_run
from hardware_specs import load_gpu
from simulators import simulate_attention
from simulators.implementations import IMPLEMENTATIONS
from simulators.matmul import gemm_time
from simulators.memory_ops import eager_time, memory_op_time

H200 = "h200-sxm-141gb-measured"


@pytest.fixture(scope="module")
def spec():
    return load_gpu(H200)


def test_eager_gemms_are_the_cublas_model_of_their_shape(spec):
    """S = Q K^T of B H heads is a batched (N x d)(d x L) GEMM; O = P V an (N x L)(L x d) one."""
    b, h, n, d = 2, 8, 1024, 64
    r = simulate_attention(spec, "torch-eager", batch=b, heads=h, seq_len=n, head_dim=d, dtype="bf16")
    k = {x.name: x for x in r.kernels}
    assert k["qk_matmul"].time_s == pytest.approx(float(gemm_time(spec, n, n, d, "bf16", batch=b * h)))
    assert k["pv_matmul"].time_s == pytest.approx(float(gemm_time(spec, n, d, n, "bf16", batch=b * h)))
    assert k["qk_matmul"].bound == "gemm model"


def test_eager_elementwise_steps_are_the_memory_op_curve_of_their_family(spec):
    """scale reads and writes S once (2 x 2 bytes an element, bf16): the vectorized family's curve;
    the causal mask (an (N, L) bool broadcast over B H) masked_fill_'s measured bf16 curve (a
    non-vectorized elementwise_kernel<128, 4>, per-element: slower per byte than fp32's)."""
    b, h, n, d = 1, 4, 2048, 128
    r = simulate_attention(spec, "torch-eager", batch=b, heads=h, seq_len=n, head_dim=d, dtype="bf16", causal=True)
    k = {x.name: x for x in r.kernels}
    s = b * h * n * n
    assert k["scale"].time_s == pytest.approx(float(memory_op_time(spec, 4 * s, family="vectorized")))
    assert k["masked_fill"].time_s == pytest.approx(float(memory_op_time(spec, 5 * s, family="masked_fill_bf16")))
    fam = spec.memory_ops.families
    assert fam["masked_fill_bf16"].bandwidth_Bps < 0.75 * fam["masked_fill_fp32"].bandwidth_Bps


def test_eager_gqa_expand_is_a_repeat_copy_of_each_kv_tensor(spec):
    """repeat_interleave of K and V to H heads: 2 kernels, each reading B H_kv L d and writing B H L d, on
    the measured repeat_interleave curve of its dtype (bf16: repeat_bf16), not the broadcast family's."""
    b, h, hk, l_, d = 1, 32, 8, 4096, 128
    r = simulate_attention(spec, "torch-eager", batch=b, heads=h, kv_heads=hk, seq_len=1, kv_len=l_, head_dim=d,
                           dtype="bf16")
    k = {x.name: x for x in r.kernels}
    per = 2 * (b * hk * l_ * d + b * h * l_ * d)
    assert k["expand_kv"].hbm_bytes == 2 * per
    assert k["expand_kv"].time_s == pytest.approx(float(memory_op_time(spec, 2 * per, kernels=2, family="repeat_bf16")))
    assert k["expand_kv"].time_s > float(memory_op_time(spec, 2 * per, kernels=2, family="broadcast"))


def test_math_gqa_expand_is_the_fp32_repeat_copy(spec):
    """torch-math upcasts first: its expand reads fp32 K, V (4 bytes an element) on repeat_fp32's curve."""
    b, h, hk, l_, d = 2, 32, 8, 2048, 128
    r = simulate_attention(spec, "torch-math", batch=b, heads=h, kv_heads=hk, seq_len=1, kv_len=l_, head_dim=d,
                           dtype="bf16")
    k = {x.name: x for x in r.kernels}
    per = 4 * (b * hk * l_ * d + b * h * l_ * d)
    assert k["expand_kv"].hbm_bytes == 2 * per
    assert k["expand_kv"].time_s == pytest.approx(float(memory_op_time(spec, 2 * per, kernels=2, family="repeat_fp32")))


def test_eager_host_issue_shows_only_where_kernels_are_shorter_than_their_launch(spec):
    """A small decode's kernels last a few us, under the host's 13-27 us a launch: the host binds, and the
    call costs the fitted host_fwd_s plus what eager_time says the launches add (2 cuBLAS calls, the
    vectorized scale, the softmax); a long prefill's kernels hide their launches."""
    from hardware_specs.op_timing import memory_ops_model

    launch = memory_ops_model(spec).launch
    host_fwd = spec.implementations.value("torch-eager", "host_fwd_s")
    small = simulate_attention(spec, "torch-eager", batch=1, heads=8, seq_len=1, kv_len=256, head_dim=64, dtype="bf16")
    gpu = [k.time_s for k in small.kernels]
    host = [launch.host_per_library_call_s, launch.host_by_family["vectorized"], launch.host_per_kernel_s,
            launch.host_per_library_call_s]
    assert sum(host) > 3 * sum(gpu)
    assert small.call_overhead_s == pytest.approx(host_fwd + float(eager_time(gpu, host)) - sum(gpu))
    assert small.call_overhead_s - host_fwd == pytest.approx(sum(host) + gpu[-1] - sum(gpu), rel=1e-9)
    big = simulate_attention(spec, "torch-eager", batch=4, heads=16, seq_len=4096, head_dim=128, dtype="bf16")
    assert big.call_overhead_s - host_fwd == pytest.approx(launch.host_per_library_call_s)  # only the first's


def test_efficient_d256_keeps_its_output_accumulator_in_global_memory(spec):
    """[MEFF] d > 128 ('_gmem' kernel): the fp32 accumulator (B H N d x 4 bytes) crosses DRAM once each way
    beyond the d = 128-style counts, and L2 once each way per key tile of 128; 51,200 B of shared memory
    a block ([NCU]) lets 4 blocks share an SM."""
    b, h, n, d = 2, 8, 2048, 256
    r = simulate_attention(spec, "torch-efficient", batch=b, heads=h, seq_len=n, head_dim=d, dtype="bf16")
    k = r.kernels[0]
    acc = b * h * n * d * 4
    qkvo = 4 * b * h * n * d * 2
    assert k.blocks_per_sm == 4
    assert k.hbm_write_bytes == b * h * n * d * 2 + acc + 4 * b * h * n  # O (bf16), accumulator, logsumexp (fp32)
    assert k.hbm_read_bytes >= qkvo * 3 // 4 + acc
    assert k.global_write_bytes >= acc * (n // 128)


def test_runner_phases_parse_and_refuse_typos():
    assert gpu_run.parse_phases("heldout:decode:2,calibration:prefill:3@0.5") == [
        ("heldout", "decode", 2, 1.0), ("calibration", "prefill", 3, 0.5)]
    with pytest.raises(ValueError, match="GRID"):
        gpu_run.parse_phases("held:decode:2")
