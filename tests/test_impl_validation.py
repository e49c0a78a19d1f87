"""The implementation harness (costmodel/validation/implementations): grids, fitting, the spec section, the
committed H200 run, and the basis of GPUs never measured."""

import math

import pytest

from costmodel.validation.implementations import fit, grids, heldout, records
from hardware_specs import load_gpu
from hardware_specs.implementations import ImplementationsSection
from simulators.config import AttentionConfig, make_config
from simulators.implementations import IMPLEMENTATIONS, run
from simulators.implementations.params import timing_basis


def test_grids_are_disjoint_and_cover_the_issue():
    cal, held = set(grids.calibration_shapes()), set(grids.heldout_shapes())
    assert not cal & held
    prefill = [s for s in held if not s.decode]
    decode = [s for s in held if s.decode]
    assert {s.heads // s.kv_heads for s in prefill} >= {1, 4, 8}
    assert {s.head_dim for s in prefill} == {64, 128, 256}
    assert {True, False} <= {s.causal for s in prefill}
    assert any(s.seq_len & (s.seq_len - 1) for s in prefill)  # a non-power of two
    assert max(s.seq_len for s in prefill) == 32768
    assert min(s.batch for s in decode) == 1 and max(s.batch for s in decode) == 64
    assert min(s.kv_len for s in decode) <= 1024 and max(s.kv_len for s in decode) == 32768
    assert {c.pass_ for c in grids.cases("heldout")} == {"fwd", "fwd+bwd"}


def _points(spec, values, shapes):
    pts = []
    for impl, pass_, s in shapes:
        cfg = make_config(AttentionConfig, **s)
        counts = run.count(spec, impl, cfg, pass_)
        p = fit.Point(impl, pass_, cfg, counts, 1.0)
        p.measured_s = fit.predict(spec, p, values)
        pts.append(p)
    return pts


def test_fit_recovers_known_parameters():
    """Times made by the model from chosen parameters (efficiency 0.37, host 41 us; overlap 0.1) are
    fitted back from other starting values (the GPU-wide parameters held: these calls do not
    determine them; nor do they pin the overlap, which trades against the efficiency within 1e-4
    of the loss, so it is not asserted)."""
    spec = load_gpu("h200-sxm-141gb")
    from hardware_specs.implementations import GPU_PARAMETERS

    truth = {("gpu", n): fit.START[n] for n in GPU_PARAMETERS}
    truth.update({("torch-flash", "fwd_efficiency_d64"): 0.37, ("torch-flash", "fwd_efficiency_d128"): 0.37,
                  ("torch-flash", "host_fwd_s"): 4.1e-5, ("torch-flash", "bwd_efficiency"): 0.3,
                  ("torch-flash", "host_fwd_bwd_s"): 1e-4, ("torch-flash", "overlap"): 0.1,
                  ("torch-flash", "block_fixed_s"): 1e-6})
    shapes = [("torch-flash", "fwd", dict(batch=b, heads=16, seq_len=n, head_dim=d, dtype="bf16"))
              for b, n, d in ((1, 256, 128), (2, 1024, 64), (4, 4096, 128), (16, 512, 64), (2, 8192, 64))]
    pts = _points(spec, truth, shapes)
    start = {**truth, ("torch-flash", "fwd_efficiency_d64"): 0.6, ("torch-flash", "fwd_efficiency_d128"): 0.6,
             ("torch-flash", "host_fwd_s"): 1e-5}
    got = fit.fit(spec, pts, sweeps=4, iters=24, start=start,
                  fixed=tuple(k for k in truth if k[0] == "gpu") + (("torch-flash", "block_fixed_s"),))
    assert got[("torch-flash", "fwd_efficiency_d64")] == pytest.approx(0.37, rel=0.02)
    assert got[("torch-flash", "fwd_efficiency_d128")] == pytest.approx(0.37, rel=0.02)
    assert got[("torch-flash", "host_fwd_s")] == pytest.approx(4.1e-5, rel=0.05)
    assert fit.loss(spec, pts, got) < 1e-4


def test_committed_section_round_trips_and_carries_provenance():
    spec = load_gpu("h200-sxm-141gb-measured")
    sec = spec.implementations
    assert sec is not None and timing_basis(spec).name == "measured"
    again = ImplementationsSection.model_validate(sec.model_dump(mode="json"))
    assert again == sec
    for params in [sec.gpu, *sec.impls.values()]:
        for p in params.values():
            assert p.unit and p.meaning and p.measured.gpu == "NVIDIA H200"
            assert p.spread is not None or p.measured.method.startswith("held")
    assert set(sec.impls) == set(grids.IMPLS)


def test_fitted_parameters_are_physical():
    sec = load_gpu("h200-sxm-141gb-measured").implementations
    assert 1e-7 < sec.value(None, "dram_latency_s") < 3e-6
    assert sec.value(None, "l2_latency_s") < sec.value(None, "dram_latency_s")
    for impl in grids.IMPLS:
        if IMPLEMENTATIONS[impl].priced_by == "op_models":  # eager: its kernels by the gemm / memory_ops fits
            assert sec.value(impl, "fwd_efficiency") is None and sec.value(impl, "host_fwd_s") > 0
            continue
        fwd = [sec.value(impl, n) for n in ("fwd_efficiency", "fwd_efficiency_d64", "fwd_efficiency_d128",
                                             "fwd_efficiency_d256") if sec.value(impl, n) is not None]
        bwd = [sec.value(impl, n) for n in ("bwd_efficiency", "bwd_efficiency_d64", "bwd_efficiency_d128",
                                             "bwd_efficiency_d256") if sec.value(impl, n) is not None]
        assert fwd and all(0 < e <= 1 for e in fwd) and bwd and all(0 < e <= 1 for e in bwd)
        assert 0 < sec.value(impl, "host_fwd_s") < sec.value(impl, "host_fwd_bwd_s") + 1e-4
        if IMPLEMENTATIONS[impl].kind == "fused":  # a block's own latency: microseconds, not a kernel's
            assert 0 < sec.value(impl, "block_fixed_s") < 2e-5
            assert 0 < sec.value(impl, "bwd_block_fixed_s") < 2e-5


def test_forward_and_backward_blocks_have_their_own_latency():
    """A forward block (Q tile in, O out) and a backward block (K, V tiles in, dK, dV out) are timed with
    their own block_fixed_s: the role picks the parameter."""
    from simulators.implementations.params import kernel_params

    basis = timing_basis(load_gpu("h200-sxm-141gb-measured"))
    v = {"block_fixed_s": 1e-6, "bwd_block_fixed_s": 3e-6}
    assert kernel_params(basis, "torch-flash", "fwd", "mma.sync", v, variant="d64").block_fixed_s == 1e-6
    assert kernel_params(basis, "torch-flash", "bwd", "mma.sync", v).block_fixed_s == 3e-6


def test_a_decode_kernel_of_its_own_has_its_own_block_latency():
    """FA2's split-KV kernel and cuDNN's sm80 decode kernel are other kernels than their forwards: role decode,
    timed with decode_block_fixed_s (the forward's where a basis lacks it). The memory-efficient backend's
    decode runs its forward kernel (fmha_cutlassF): role fwd."""
    from simulators.config import AttentionConfig, make_config
    from simulators.implementations import run
    from simulators.implementations.params import Basis, kernel_params

    spec = load_gpu("h200-sxm-141gb-measured")
    dec = make_config(AttentionConfig, batch=1, heads=32, kv_heads=32, seq_len=1, kv_len=8192, head_dim=128,
                      dtype="bf16")
    pre = make_config(AttentionConfig, batch=1, heads=32, kv_heads=8, seq_len=2048, head_dim=128, dtype="bf16")
    roles = {i: [r for _, r in run.count(spec, i, dec, "fwd")] for i in ("torch-flash", "torch-cudnn", "torch-efficient")}
    assert roles["torch-flash"][0] == roles["torch-cudnn"][0] == "decode" and roles["torch-efficient"] == ["fwd"]
    assert [r for _, r in run.count(spec, "torch-flash", pre, "fwd")] == ["fwd"]
    basis = timing_basis(spec)
    v = {"block_fixed_s": 1e-6, "decode_block_fixed_s": 4e-6}
    assert kernel_params(basis, "torch-flash", "decode", "mma.sync", v, variant="d128").block_fixed_s == 4e-6
    bare = Basis("test", {k: x for k, x in basis.values.items() if k[1] != "decode_block_fixed_s"})
    assert kernel_params(bare, "torch-flash", "decode", "mma.sync", {"block_fixed_s": 1e-6},
                         variant="d128").block_fixed_s == 1e-6


def test_the_two_calibrations_are_disjoint_sets_of_repeats():
    from costmodel.validation.implementations import calibrate

    assert calibrate.parse_sides("0+2+4,1+3") == ({0, 2, 4}, {1, 3})
    for bad in ("0+2", "a,1", "1+2,2+3"):
        with pytest.raises(ValueError, match="--spread-reps"):
            calibrate.parse_sides(bad)
    with pytest.raises(SystemExit) as exc:
        calibrate.main(["--spread-reps", "1,1"])
    assert exc.value.code == 2


def test_committed_heldout_predictions_are_the_current_model():
    """heldout-results.json (written by calibrate) holds what the current model predicts for each
    recorded held-out call: `validate --implementations --repredict` gives the same numbers."""
    import json

    committed = json.loads((records.RAW.parent / "heldout-results.json").read_text())
    spec = load_gpu("h200-sxm-141gb-measured")
    data = records.load()
    held = [m for m in records.measurements(data) if m.case.grid == "heldout"]
    rows = {r["key"]: r for r in heldout.time_rows(spec, held[::7])}
    for r in committed["time"]:
        if r["key"] in rows:
            assert rows[r["key"]]["predicted_s"] == pytest.approx(r["predicted_s"], rel=1e-6), r["key"]
    assert committed["meta"]["gpu"] == "NVIDIA H200" and committed["meta"]["torch"].startswith("2.11")


def test_unmeasured_gpus_say_their_basis():
    """H100: the H200's fit, efficiencies carried as fractions of the datasheet peak (same GH100 chip);
    A100: the Ampere defaults."""
    assert timing_basis(load_gpu("h100-sxm5-80gb")).name == "scaled from h200-sxm-141gb-measured"
    assert timing_basis(load_gpu("a100-sxm4-80gb")).name == "defaults for ampere"
    h200 = load_gpu("h200-sxm-141gb-measured")
    b = timing_basis(load_gpu("h100-sxm5-80gb"))
    assert b.tensor_ratio == pytest.approx(h200.peak_flops_per_s["bf16_tensor"] / 989.4e12)
    assert b.memory_ratio == pytest.approx(h200.hbm_bandwidth_Bps / 4.8e12)


def test_gpus_command_lists_the_basis(capsys):
    import json

    from costmodel.cli.main import main

    main(["gpus", "--json"])
    gpus = {g["name"]: g for g in json.loads(capsys.readouterr().out)["gpus"]}
    assert gpus["h200-sxm-141gb-measured"]["timing_basis"] == "measured"
    assert gpus["h100-sxm5-80gb"]["timing_basis"].startswith("scaled from")
    assert gpus["mi300x"]["timing_basis"].startswith("defaults")


def test_predicted_time_grows_with_the_call():
    """Sanity on the fitted model: 4x the batch costs between 2x and 4.5x (the host cost is shared)."""
    spec = load_gpu("h200-sxm-141gb-measured")
    from simulators import simulate_attention

    a, b = (simulate_attention(spec, "torch-cudnn", batch=bt, heads=16, seq_len=4096, head_dim=128, dtype="bf16")
            for bt in (1, 4))
    assert 2 < b.time_s / a.time_s < 4.5
    assert math.isclose(b.hbm_bytes / a.hbm_bytes, 4, rel_tol=0.05)
