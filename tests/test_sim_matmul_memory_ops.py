"""simulators/matmul.py and simulators/memory_ops.py: tile quantization, waves, split-K, Hockney's curve, eager issue."""

from __future__ import annotations

import numpy as np
import pytest

from hardware_specs import load_gpu
from hardware_specs.op_timing import GemmModel, KernelFamily, LaunchModel, MemoryOpsModel
from simulators.matmul import gemm_time
from simulators.memory_ops import eager_time, half_bandwidth_bytes, memory_op_time

SEED = 20261202


def _spec(**gemm):
    mem = MemoryOpsModel(latency_s=2e-6, bandwidth_Bps=4e12,
                         launch=LaunchModel(host_per_kernel_s=1e-5, graph_per_kernel_s=0.0, graph_launch_s=5e-6))
    g = GemmModel(efficiency={"bf16": 1.0}, bandwidth_fraction=1.0, overhead_s=0.0, tiles=((128, 128),), split_k=(1,),
                  **gemm)
    return load_gpu("h200-sxm-141gb").model_copy(update={"gemm": g, "memory_ops": mem})


def test_tile_quantization_and_wave_tail():
    spec = _spec()
    sm_rate = spec.peak_flops_per_s["bf16_tensor"] / spec.sm_count
    K = 8192
    one_tile = 2 * 128 * 128 * K / sm_rate  # a 128 x 128 tile over K on one SM
    # 132 tiles fill one wave; 133 need a second, which costs a whole wave (the tail)
    t132 = gemm_time(spec, 128 * 12, 128 * 11, K)
    t133 = gemm_time(spec, 128 * 133, 128, K)
    assert t132 == pytest.approx(one_tile)
    assert t133 == pytest.approx(2 * one_tile)
    # a partial tile costs a whole one: M = 1 costs what M = 128 does when compute binds
    assert gemm_time(spec, 1, 128 * 132, K, detail=True)[1] == pytest.approx(one_tile)


def test_split_k_helps_a_skinny_long_gemm():
    no = _spec()
    yes = _spec().model_copy(update={"gemm": _spec().gemm.model_copy(update={"split_k": (1, 2, 4, 8)})})
    m, n, k = 128, 256, 65536  # 2 tiles: 130 SMs idle without split-K
    t_no, t_yes = gemm_time(no, m, n, k), gemm_time(yes, m, n, k)
    assert t_yes < t_no / 3
    split = gemm_time(yes, m, n, k, detail=True)[4]
    assert split == 8


def test_memory_bound_gemm_reads_each_operand_once():
    spec = _spec()  # a skinny 8 x 128 tile, as cuBLAS's decode kernels use
    spec = spec.model_copy(update={"gemm": spec.gemm.model_copy(update={"tiles": ((8, 128),)})})
    t, c, mem, hbm, s = gemm_time(spec, 1, 8192, 8192, detail=True)
    assert hbm == 2 * (8192 * 8192 + 8192 + 8192)
    assert t == pytest.approx(hbm / 4e12) and mem > c


def test_batched_gemm_writes_c_at_the_epilogue_bandwidth():
    """A strided-batched score GEMM (K = 64: few k-steps) is bound by writing C: 2 bytes x M N batch at the
    fitted write bandwidth, plus the operand reads at the memory-op bandwidth; batch = 1 is unchanged."""
    spec = _spec(batched_write_Bps=2e12)
    b, n, d = 64, 4096, 64
    t, c, mem, hbm, s = gemm_time(spec, n, n, d, batch=b, detail=True)
    reads, writes = 2 * (n * d + d * n) * b, 2 * n * n * b
    assert hbm == reads + writes
    assert t == pytest.approx(reads / 4e12 + writes / 2e12) and mem > c
    assert gemm_time(spec, n, n, d) == pytest.approx(gemm_time(_spec(), n, n, d))  # batch 1: off


def test_rows_of_c_off_the_sector_grid_drain_at_their_own_bandwidth():
    """N = 3000 bf16 scores: rows of 6000 B, 16 B past a 32-byte sector; N = 3008: 6016 B, whole sectors.
    Only the misaligned rows' writes go at batched_unaligned_write_Bps; the reads and batch = 1 are unchanged."""
    spec = _spec(batched_write_Bps=2e12, batched_unaligned_write_Bps=1e12)
    b, d = 8, 64
    for n, write_bw in ((3000, 1e12), (3008, 2e12)):
        t, c, mem, hbm, s = gemm_time(spec, n, n, d, batch=b, detail=True)
        reads, writes = 2 * (n * d + d * n) * b, 2 * n * n * b
        assert mem == pytest.approx(reads / 4e12 + writes / write_bw)
    assert gemm_time(spec, 3000, 3000, d) == pytest.approx(gemm_time(_spec(), 3000, 3000, d))  # batch 1: off


def test_batched_gemm_pays_a_fixed_latency_per_tile_and_wave():
    """132 tiles of 128 x 128 fill one wave: one tile's latency on top of the wave's compute; 133 tiles two."""
    spec = _spec(batched_tile_s=1e-6)
    sm_rate = spec.peak_flops_per_s["bf16_tensor"] / spec.sm_count
    K = 8192
    one = 2 * 128 * 128 * K / sm_rate + 1e-6
    assert gemm_time(spec, 128 * 12, 128 * 11, K, batch=2) == pytest.approx(2 * one)  # 264 tiles: 2 waves
    assert gemm_time(spec, 128 * 6, 128 * 11, K, batch=2) == pytest.approx(one)  # 132 tiles: 1 wave
    assert gemm_time(spec, 128 * 6, 128 * 11, K) == pytest.approx(2 * 128 * 128 * K / sm_rate)  # batch 1: off


def test_unaligned_width_uses_align1_efficiency():
    spec = _spec(unaligned_efficiency=0.1, unaligned_bandwidth_fraction=0.5)
    aligned, odd = gemm_time(spec, 4096, 4096, 4096), gemm_time(spec, 4096, 4097, 4096)
    assert odd > 8 * aligned


def test_hockney_half_bandwidth():
    spec = _spec()
    n_half = half_bandwidth_bytes(spec)
    assert n_half == pytest.approx(2e-6 * 4e12)
    t = memory_op_time(spec, n_half)
    assert n_half / t == pytest.approx(4e12 / 2)


def test_family_table_is_interpolated_between_points():
    spec = _spec()
    fam = KernelFamily(latency_s=1e-6, bandwidth_Bps=1e12, table_bytes=(1e3, 1e6), table_s=(2e-6, 8e-6))
    spec = spec.model_copy(update={"memory_ops": spec.memory_ops.model_copy(update={"families": {"reduce": fam}})})
    assert memory_op_time(spec, 1e3, 1, "reduce") == pytest.approx(2e-6)
    assert memory_op_time(spec, np.sqrt(1e9), 1, "reduce") == pytest.approx(4e-6)  # halfway in log-log
    assert memory_op_time(spec, 1e9, 1, "reduce") == pytest.approx(1e-6 + 1e-3)  # outside: the curve
    assert memory_op_time(spec, 2e3, 2, "reduce") == pytest.approx(4e-6)  # two kernels of 1 kB


def test_eager_time_matches_a_step_by_step_simulation():
    rng = np.random.default_rng(SEED)
    for _ in range(20):
        n = int(rng.integers(1, 40))
        gpu, host = rng.exponential(1.0, n), rng.exponential(1.0, n)
        issue = end = 0.0
        for g, h in zip(gpu, host):  # kernel i starts when issued and when the GPU is free
            issue += h
            end = max(issue, end) + g
        assert eager_time(gpu, host) == pytest.approx(end)


def test_repeated_layers_closed_form_matches_expansion():
    from costmodel.step.launch import eager_segments_time as _eager

    rng = np.random.default_rng(SEED + 1)
    for _ in range(20):
        segs = [(list(rng.exponential(1.0, k)), list(rng.exponential(1.0, k)), int(r))
                for k, r in ((int(rng.integers(1, 5)), 1), (int(rng.integers(1, 9)), int(rng.integers(1, 6))),
                             (int(rng.integers(1, 5)), 1))]
        gpu = sum((g * r for g, _, r in segs), [])
        host = sum((h * r for _, h, r in segs), [])
        assert _eager(segs) == pytest.approx(eager_time(np.array(gpu), np.array(host)))


def test_datasheet_gpu_still_gets_an_answer():
    spec = load_gpu("a100-sxm4-80gb")
    assert spec.gemm is None and spec.memory_ops is None
    t = gemm_time(spec, 4096, 4096, 4096)
    ideal = 2 * 4096**3 / spec.peak_flops_per_s["bf16_tensor"]
    assert ideal < t < 2 * ideal
