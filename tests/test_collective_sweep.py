"""Issue 19's collective sweep without a GPU: its grid and records, the runner on gloo, and the fit on synthetic data."""

import datetime as dt

import numpy as np
import pytest

from costmodel.parallel.collective_fit import fit_collectives, overlay_yaml, predict_one
from costmodel.parallel.collective_sweep import SWEEP_COLLECTIVES, elements, record, sizes
from costmodel.parallel.collectives import collective_time
from hardware_specs.cluster import load_cluster

SEED = 19


def test_grid_is_nccl_tests_8B_to_4GiB():
    s = sizes()
    assert s[0] == 8 and s[-1] == 4 << 30 and len(s) == 30
    assert all(b == 2 * a for a, b in zip(s, s[1:]))
    assert elements("all_reduce", 8, 8) == 2
    assert elements("all_gather", 8, 8) is None  # 2 floats cannot split 8 ways
    assert elements("reduce_scatter", 1 << 20, 8) == (1 << 18)


def test_record_bus_bandwidth():
    r = record("all_reduce", 8, 1e9, 1e-2)
    assert r["algbw_Bps"] == pytest.approx(1e11) and r["busbw_Bps"] == pytest.approx(1e11 * 2 * 7 / 8)
    assert record("send_recv", 2, 1e9, 1e-2)["busbw_Bps"] == pytest.approx(1e11)


def test_runner_on_gloo():
    pytest.importorskip("torch")
    from costmodel.parallel.collective_sweep import sweep

    recs = sweep(2, SWEEP_COLLECTIVES, [64, 1024], backend="gloo", device="cpu", warmup=1, iters=2, budget_s=60)
    got = {(r["collective"], r["nbytes"]) for r in recs}
    assert got == {(c, s) for c in SWEEP_COLLECTIVES for s in (64, 1024)}
    assert all(r["time_s"] > 0 and r["n"] == 2 for r in recs)


def synthetic(alpha, eff, bw, n=8, noise=0.03):
    rng = np.random.default_rng(SEED)
    recs = []
    for c in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"):
        for S in sizes(1024, 4 << 30):
            m = n if c != "send_recv" else 2
            t = float(predict_one(S, c, m, bw, alpha[c], eff[c])) * (1 + noise * rng.standard_normal())
            recs.append(record(c, m, S, t))
    return recs


def test_fit_recovers_terms_and_held_out_error_is_small():
    bw = 450e9
    alpha = {"all_reduce": 2e-6, "all_gather": 3e-6, "reduce_scatter": 3e-6, "all_to_all": 5e-6, "send_recv": 8e-6}
    eff = {"all_reduce": 0.8, "all_gather": 0.85, "reduce_scatter": 0.82, "all_to_all": 0.7, "send_recv": 0.9}
    fits = fit_collectives(synthetic(alpha, eff, bw), bw)
    for c in alpha:
        assert fits[c]["efficiency"] == pytest.approx(eff[c], rel=0.05)
        assert fits[c]["latency_s"] == pytest.approx(alpha[c], rel=0.25)
        assert fits[c]["holdout_median_abs_error"] < 0.05  # noise is 3%


def test_overlay_round_trip(tmp_path):
    bw = load_cluster("dgx-h200").intra_node.bandwidth_per_gpu_Bps
    alpha = dict.fromkeys(SWEEP_COLLECTIVES, 4e-6)
    eff = dict.fromkeys(SWEEP_COLLECTIVES, 0.75)
    fits = fit_collectives(synthetic(alpha, eff, bw, noise=0.0), bw)
    text = overlay_yaml(fits, base="dgx-h200", gpu="H200 (synthetic)", date=dt.date(2026, 12, 2),
                        method="synthetic sweep, test")
    p = tmp_path / "overlay.yaml"
    p.write_text(text)
    c = load_cluster(p)
    assert c.intra_node.measured["efficiency.all_reduce"].gpu == "H200 (synthetic)"
    # the calibrated model reproduces the synthetic times (ring, one node)
    for S in (1 << 20, 1 << 30):
        t = collective_time(c, "all_reduce", S, 8, algorithm="ring")
        assert t == pytest.approx(float(predict_one(S, "all_reduce", 8, bw, 4e-6, 0.75)), rel=1e-6)
