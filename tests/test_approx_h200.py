"""The H200 measurements of the approximations (costmodel/validation/results/h200/approx-h200.json, 2026-12-02), checked on a CPU.

The eager-ops fit committed in hardware_specs/calibrated/ is made again from the raw file (hardware_specs/eager-ops/), the
predictions file is made again with the current model (a model change that is not re-recorded
fails here), the simulated kernel lists are checked against the kernels Nsight Compute saw, and
the issue's targets are checked on the held-out cases (d = 128: no kernel of the fit grid).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from costmodel.validation import approx_compare as ac
from costmodel.validation import approx_fit as af
from hardware_specs import load_gpu

ROOT = Path(__file__).resolve().parent.parent
SPEC = "h200-sxm-141gb-measured"


@pytest.fixture(scope="module")
def results():
    return ac.load(ac.RESULTS)


@pytest.fixture(scope="module")
def spec():
    return load_gpu(SPEC)


def test_results_are_a_real_h200_run(results):
    meta = results["meta"]
    assert meta["gpu"] == "NVIDIA H200" and meta["torch"].startswith("2.11") and "580.159" in meta["nvidia_smi"]
    timed = [r for r in results["records"] if "gpu_time_s" in r]
    assert len(timed) == 136 and not [r for r in results["records"] if "error" in r]
    acc = results["accuracy"]
    assert all(a["finite"] for a in acc.values())
    for m in ("linformer", "performer", "performer causal"):  # bf16 against the same program in float64
        assert acc[m]["rel_err_bf16_vs_fp64_program"] < 5e-2, m


def test_eager_ops_fit_is_the_committed_one(results, spec):
    again = af.fit(results, spec)
    committed = yaml.safe_load(af.OUT.read_text())
    assert committed["families"].keys() == again["families"].keys()
    for k, f in again["families"].items():
        assert committed["families"][k]["bandwidth_Bps"] == pytest.approx(f["bandwidth_Bps"], rel=1e-9), k
        assert committed["families"][k]["per_output_s"] == pytest.approx(f["per_output_s"], rel=1e-9, abs=1e-18), k
    for k in ("latency_s", "host_per_op_s", "call_overhead_s", "gap_per_kernel_s"):
        assert committed[k] == pytest.approx(again[k], rel=1e-9), k


def test_predictions_file_is_the_current_model(results):
    committed = json.loads(ac.PREDICTED.read_text())
    again = json.loads(json.dumps(ac.report(results)))
    assert len(again["rows"]) == len(committed["rows"])
    for new, old in zip(again["rows"], committed["rows"]):
        assert (new["method"], new["causal"], new["seq_len"], new["head_dim"]) == \
               (old["method"], old["causal"], old["seq_len"], old["head_dim"])
        for key in ("predicted_eager_s", "predicted_gpu_s", "predicted_hbm_bytes"):
            assert new[key] == pytest.approx(old[key], rel=1e-9), (key, new["method"], new["seq_len"])
    assert again["crossovers"] == committed["crossovers"]


def test_simulated_kernels_are_the_kernels_ncu_saw(results, spec):
    rows, skipped = af.matched_kernels(results, spec)
    assert not skipped  # every approximation case: as many kernels, in the same order
    assert len({r["case"] for r in rows}) == 10
    # the simulated (tensor-level) bytes of the large kernels against Nsight Compute's DRAM bytes
    big = [r for r in rows if r["dram_bytes"] > 64e6]
    errs = sorted(abs(r["bytes"] / r["dram_bytes"] - 1) for r in big)
    assert errs[len(errs) // 2] < 0.08


def test_targets_on_the_held_out_cases(results):
    rep = ac.report(results)
    for method in ("linformer", "performer", "performer causal", "reformer", "reformer causal"):
        assert rep["errors_heldout_d128"]["eager"][method]["median_abs"] < 0.10, method
        assert rep["errors_heldout_d128"]["gpu"][method]["median_abs"] < 0.10, method
    for c in rep["crossovers"]:
        if c["measured"] is not None or c["predicted"] is not None:
            assert c["octaves_off"] is not None and c["octaves_off"] <= 1.0, c
