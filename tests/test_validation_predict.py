"""costmodel/validation/predict.py: a case's prediction, our kernels' FP32 rate, re-prediction, records (no GPU)."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from costmodel.validation.predict import (build_record, numba_fp32_efficiency, predict_case, prediction_from_simulation,
                                          repredict, tiled_occupancy)
from costmodel.validation.schema import NcuKernel, load_results
from costmodel.validation.sweep import Case, _cfg, sweep


SAMPLE = Path(__file__).parent / "data" / "validation_sample.json"


@pytest.fixture(scope="module")
def raw():
    return json.loads(SAMPLE.read_text())


@pytest.fixture(scope="module")
def results():
    return load_results(SAMPLE)


def test_prediction_assembled_from_a_simulator_result():
    kernel = SimpleNamespace(name="fa2_forward", time_s=2e-3, hbm_bytes=1e8, bound="fp32", launch_s=4e-5)
    result = SimpleNamespace(flops=4e12, time_s=2.5e-3, hbm_bytes=1.2e8, global_bytes=3e8, bound="fp32",
                             kernels=[kernel])
    flops, predicted = prediction_from_simulation(result)
    assert flops == 4e12
    assert predicted == {"time_s": 2.5e-3, "hbm_bytes": 1.2e8, "global_bytes": 3e8, "bound": "fp32",
                         "kernels": [{"name": "fa2_forward", "time_s": 2e-3, "hbm_bytes": 1e8, "bound": "fp32",
                                      "launch_s": 4e-5}]}
    as_dict = {"flops": 1.0, "time_s": 1.0, "hbm_bytes": 2.0, "global_bytes": 3.0, "bound": "hbm", "kernels": []}
    assert prediction_from_simulation(as_dict) == (1.0, {"time_s": 1.0, "hbm_bytes": 2.0, "global_bytes": 3.0,
                                                         "bound": "hbm", "kernels": []})


def test_record_built_with_ncu_bytes_summed():
    case = sweep(quick=True, families=("standard_fwd",))[0]
    kernels = [NcuKernel(name="scores", dram_read_bytes=100.0, dram_write_bytes=400.0, time_s=1e-3),
               NcuKernel(name="softmax", dram_read_bytes=400.0, dram_write_bytes=400.0, time_s=2e-3)]
    predicted = {"time_s": 3e-3, "hbm_bytes": 1300.0, "global_bytes": 1300.0, "bound": "hbm", "kernels": []}
    rec = build_record(case, 1e9, predicted, [3e-3, 1e-3, 2e-3], kernels, 1e-6)
    assert rec.measured.time_s == 2e-3  # the median
    assert (rec.measured.dram_read_bytes, rec.measured.dram_write_bytes) == (500.0, 800.0)
    assert rec.source == "ours" and rec.family == "standard_fwd"
    assert build_record(case, 1e9, predicted, [1e-3]).measured.dram_bytes is None



def _spec_with_tiled_rates(by_occupancy, value):
    from hardware_specs import load_gpu

    spec = load_gpu("h100-sxm5-80gb")
    info = {"numba_tiled_fp32_flops_per_s": {"value": value, "method": "test", "by_blocks_per_sm": by_occupancy}}
    return spec.model_copy(update={"calibration": info})


def test_fp32_efficiency_follows_the_measured_occupancy():
    peak = 66.9e12
    spec = _spec_with_tiled_rates({1: 5e12, 2: 10e12, 4: 20e12}, 22e12)
    assert numba_fp32_efficiency(spec) == pytest.approx(22e12 / peak)       # no occupancy: the full-grid rate
    assert numba_fp32_efficiency(spec, 4) == pytest.approx(22e12 / peak)    # the sweep's largest: the full grid
    assert numba_fp32_efficiency(spec, 1) == pytest.approx(22e12 / 4 / peak)  # a quarter of the sweep's top
    assert numba_fp32_efficiency(spec, 3) == pytest.approx(22e12 * 15 / 20 / peak)  # halfway between 2 and 4
    assert numba_fp32_efficiency(spec, 8) == pytest.approx(22e12 / peak)    # past the sweep: clamped
    assert numba_fp32_efficiency(spec, 0.5) == pytest.approx(22e12 / 4 / peak)  # below: clamped to one block
    # reads that hit L2 hide latency as the full grid does: half from DRAM, half the penalty
    assert numba_fp32_efficiency(spec, 1, dram_fraction=0.5) == pytest.approx(22e12 * (0.5 + 0.5 / 4) / peak)
    assert numba_fp32_efficiency(spec, 1, dram_fraction=0.0) == pytest.approx(22e12 / peak)


def test_fa1_grid_of_batch_times_heads_is_predicted_at_one_block_per_sm():
    """FA1's grid is B*H blocks (Dao 2022, Alg. 1: one block per head): 128 blocks on 132 SMs
    leave one block on each busy SM, so its FP32 rate is the one-block rate."""
    from simulators import simulate_attention

    spec = _spec_with_tiled_rates({1: 5e12, 2: 10e12, 4: 20e12}, 22e12)
    case = Case("flash1_fwd", _cfg(4, 32, 1024, 64, block_r=64, block_c=64))
    shape = dict(batch=4, heads=32, kv_heads=32, seq_len=1024, kv_len=1024, head_dim=64, causal=False, window=None)
    sim = simulate_attention(spec, "flash1", dtype="fp32", tensor_cores=False, block_r=64, block_c=64, **shape)
    main = max(sim.kernels, key=lambda k: k.matmul_flops + k.other_flops)
    assert main.blocks == 4 * 32
    occupancy, dram = tiled_occupancy(spec, sim)
    assert occupancy == pytest.approx(main.threads_per_block / 128)
    assert dram > 0.9  # every block streams its own head's K and V: no reuse for L2 to serve
    _, slow = predict_case(spec, case)
    _, fast = predict_case(_spec_with_tiled_rates({1: 20e12, 2: 20e12, 4: 20e12}, 22e12), case)
    assert slow["time_s"] > 2.0 * fast["time_s"]  # a quarter of the rate where FP32 binds


def test_repredict_keeps_measurements_and_replaces_predictions(results):
    redone = repredict(results, "h100-sxm5-80gb")
    assert redone.meta.spec == "h100-sxm5-80gb" and "recomputed" in redone.meta.notes[-1]
    assert [r.measured for r in redone.records] == [r.measured for r in results.records]
    assert [r.predicted.time_s for r in redone.records] != [r.predicted.time_s for r in results.records]
