"""torch's register block softmax (simulators/memory_ops.softmax_block_time), its kernel choice by row
length, and cuDNN's backward DRAM bytes (compulsory): constructed cases with hand counts, and the
committed Nsight Compute counts of the calibration grid.

Sources: aten/src/ATen/native/cuda/SoftMax.cu (host_softmax: softmax_warp_forward while L <= 2048 and
L * element_bytes <= 8192; a block of min(L, 1024) threads and cunn_SoftMaxForwardReg<ceil(L / block)>
while that is < 10); the kernel names and registers Nsight Compute reported for torch 2.11
(results/h200/attn_ops/ncu_ops.csv).
"""

import math

import pytest

from hardware_specs import load_gpu
from hardware_specs.op_timing import SoftmaxBlockModel
from simulators import simulate_attention
from simulators.memory_ops import softmax_block_time, softmax_reg_count

H200 = "h200-sxm-141gb-measured"


@pytest.fixture(scope="module")
def spec():
    return load_gpu(H200)


@pytest.mark.parametrize("L,e,c", [(1024, 2, None), (2048, 2, None), (2048, 4, None), (2304, 2, 3), (3000, 2, 3),
                                   (3072, 4, 3), (4096, 2, 4), (6144, 2, 6), (7168, 4, 7), (9216, 2, 9),
                                   (9217, 2, None), (12800, 2, None)])
def test_reg_count_is_torchs_rule(L, e, c):
    assert softmax_reg_count(L, e) == c


def test_reg_count_matches_the_kernels_nsight_compute_saw():
    """Every softmax row length of the NCU probe (attn_ops_run --probe): warp kernel where the rule says
    None below 2048, cunn_SoftMaxForwardReg where it gives a count, another block kernel above."""
    from pathlib import Path

    from costmodel.validation import attn_ops_grids as ag
    from costmodel.validation.implementations import ncu

    csv = Path(__file__).parents[1] / "costmodel/validation/results/h200/attn_ops/ncu_ops.csv"
    ks = [k for k in ncu.parse_csv(csv.read_text()) if "oftMax" in k["name"] or "softmax_warp" in k["name"]]
    Ls = sorted({r["L"] for r in ag.softmax_grid()} | set(ag.SOFTMAX_L))
    assert len(ks) == 2 * len(Ls)
    for i, k in enumerate(ks):
        L, e = Ls[i % len(Ls)], 2 if i < len(Ls) else 4
        c = softmax_reg_count(L, e)
        if c is not None:
            assert "cunn_SoftMaxForwardReg" in k["name"] and k["threads_per_block"] == 1024
            assert (k["regs_per_thread"] <= 32) == (c <= SoftmaxBlockModel.model_fields["two_block_max_reg_cnt"].default)
        elif L <= 2048:
            assert "softmax_warp_forward" in k["name"]
        else:
            assert "cunn_SoftMaxForwardReg" not in k["name"]


def test_one_more_row_than_a_wave_costs_a_wave(spec):
    """Two 1024-thread blocks an SM while reg_cnt <= 6: a wave is 2 x SMs rows; one row more adds a
    block's time latency + 2 L / rate. reg_cnt 7 holds one block an SM: waves of SMs rows at the
    one-block rate."""
    m = SoftmaxBlockModel(latency_s=1e-6, sm_element_rate_per_s=4e9, one_block_element_rate_per_s=3e9)
    sms, L = spec.sm_count, 4096
    block = 1e-6 + 2 * L / 4e9
    assert float(softmax_block_time(spec, 2 * sms * 5, L, 2, m)) == pytest.approx(5 * block)
    assert float(softmax_block_time(spec, 2 * sms * 5 + 1, L, 2, m)) == pytest.approx(6 * block)
    L7 = 7 * 1024
    assert float(softmax_block_time(spec, sms * 3, L7, 2, m)) == pytest.approx(3 * (1e-6 + L7 / 3e9))
    assert softmax_block_time(spec, 100, 2048, 2, m) is None


def test_block_softmax_fit_is_within_its_measured_errors(spec):
    sb = spec.memory_ops.softmax_block
    assert sb is not None and sb.measured.fit_points >= 10
    assert sb.measured.heldout_median_abs_err < 0.05 and sb.measured.heldout_max_abs_err < 0.10
    # one block an SM hides less latency: a lower element rate than two blocks'
    assert sb.one_block_element_rate_per_s < sb.sm_element_rate_per_s


def test_eager_forward_softmax_uses_the_block_model_and_warp_rows_to_2048(spec):
    b, h, n = 2, 16, 3000
    r = simulate_attention(spec, "torch-eager", batch=b, heads=h, seq_len=n, head_dim=128, dtype="bf16")
    k = {x.name: x for x in r.kernels}
    assert k["softmax"].time_s == pytest.approx(float(softmax_block_time(spec, b * h * n, n, 2)))
    r2 = simulate_attention(spec, "torch-eager", batch=b, heads=h, seq_len=2048, head_dim=128, dtype="bf16")
    assert {x.name: x for x in r2.kernels}["softmax"].bound != "softmax block model"


def test_cudnn_backward_bytes_are_compulsory_by_hand(spec):
    """B2 H16/4 N L 4096 d128 bf16: reads Q, K, V, dO, LSE, D and the fp32 dQ accumulator once; writes
    dK, dV a query head (the group reduced after) and the accumulator."""
    b, h, hk, n, d = 2, 16, 4, 4096, 128
    r = simulate_attention(spec, "torch-cudnn", pass_="bwd", batch=b, heads=h, kv_heads=hk, seq_len=n,
                           head_dim=d, dtype="bf16")
    k = next(x for x in r.kernels if "bprop" in x.name)
    q, kv, acc, rows = b * h * n * d * 2, b * hk * n * d * 2, b * h * n * d * 4, b * h * n * 4
    assert k.hbm_read_bytes == 2 * q + 2 * kv + 2 * rows + acc
    assert k.hbm_write_bytes == 2 * b * h * n * d * 2 + acc


def test_cudnn_bprop_reads_match_the_committed_nsight_compute_counts(spec):
    """The calibration grid's 16 cuDNN fwd+bwd calls (impls-raw-3.json): the bprop kernel's DRAM reads
    within 10 % of the compulsory count at every N (512-8192), d (64-256), causal and GQA."""
    from costmodel.validation.implementations import records

    profs = [p for p in records.profiles(records.load(records.BWD_NCU), None) if p.case.impl == "torch-cudnn"]
    assert len(profs) == 16
    for p in profs:
        s = p.case.shape
        meas = sum(k["dram_read_bytes"] for k in p.kernels if "bprop" in k["name"])
        q, kv = s.batch * s.heads * s.seq_len * s.head_dim * 2, s.batch * s.kv_heads * s.kv_len * s.head_dim * 2
        hand = 2 * q + 2 * kv + 2 * s.batch * s.heads * s.seq_len * 4 + 2 * q
        assert math.isclose(meas, hand, rel_tol=0.10), (s.label(), meas, hand)
