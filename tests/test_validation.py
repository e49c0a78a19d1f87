"""costmodel/validation.py (results format, errors, summary, targets, ncu output) and the
GPU-free parts of kernels/validate.py (sweep, prediction and record assembly, ncu plumbing).

The sample file tests/data/validation_sample.json is synthetic: its numbers were made up
so that every relative error is a round number, checked here by hand.
"""
import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from costmodel.validation import (
    FAMILIES, ResultsError, compare, load_results, parse_ncu_csv, parse_results, relative_error,
    short_kernel_name, summarize, targets,
)

SAMPLE = Path(__file__).parent / "data" / "validation_sample.json"


@pytest.fixture(scope="module")
def raw():
    return json.loads(SAMPLE.read_text())


@pytest.fixture(scope="module")
def results():
    return load_results(SAMPLE)


def test_sample_is_marked_synthetic(raw):
    assert "SYNTHETIC" in raw["meta"]["command"] and any("SYNTHETIC" in n for n in raw["meta"]["notes"])


def test_relative_error_definition():
    assert relative_error(110.0, 100.0) == pytest.approx(0.10)
    assert relative_error(90.0, 100.0) == pytest.approx(-0.10)
    np.testing.assert_allclose(relative_error([2.0, 3.0], [4.0, 2.0]), [-0.5, 0.5])


def test_time_errors_recomputed_from_raw_numbers(raw, results):
    rows = compare(results)
    by_hand = [(r["predicted"]["time_s"] - r["measured"]["time_s"]) / r["measured"]["time_s"] for r in raw["records"]]
    assert [row.time_error for row in rows] == pytest.approx(by_hand)
    # The round numbers the sample was built with.
    assert by_hand == pytest.approx([0.05, -0.05, 0.08, -0.09, 0.40, 0.20, 0.15, 0.10, -0.10, 0.30])


def test_bytes_errors_only_where_ncu_measured(raw, results):
    rows = compare(results)
    for row, r in zip(rows, raw["records"]):
        m = r["measured"]
        if m["dram_read_bytes"] is None:
            assert row.bytes_error is None and row.measured_dram_bytes is None
        else:
            dram = m["dram_read_bytes"] + m["dram_write_bytes"]
            assert row.measured_dram_bytes == dram
            assert row.bytes_error == pytest.approx((r["predicted"]["hbm_bytes"] - dram) / dram)
    assert [r.bytes_error for r in rows[:4]] == pytest.approx([0.02, -0.03, 0.04, 0.06])


def test_summary_medians_and_worst_by_hand(results):
    s = summarize(results)
    assert list(s) == ["standard_fwd", "flash2_fwd", "flash_bwd", "torch_sdpa_flash", "torch_sdpa_math"]
    assert (s["standard_fwd"].n, s["flash2_fwd"].n, s["flash_bwd"].n) == (2, 3, 2)
    # flash2: |errors| 0.08, 0.09, 0.40 -> median 0.09, worst 0.40; bytes 0.04, 0.06 -> median 0.05.
    assert s["flash2_fwd"].median_abs_time_error == pytest.approx(0.09)
    assert s["flash2_fwd"].worst_abs_time_error == pytest.approx(0.40)
    assert s["flash2_fwd"].n_bytes == 2
    assert s["flash2_fwd"].median_abs_bytes_error == pytest.approx(0.05)
    assert s["flash2_fwd"].worst_abs_bytes_error == pytest.approx(0.06)
    # flash_bwd: 0.20 and 0.15 -> median 0.175; no bytes.
    assert s["flash_bwd"].median_abs_time_error == pytest.approx(0.175)
    assert s["flash_bwd"].median_abs_bytes_error is None
    assert s["standard_fwd"].median_abs_bytes_error == pytest.approx(0.025)
    assert s["torch_sdpa_flash"].median_abs_time_error == pytest.approx(0.10)


def test_targets_on_the_synthetic_sample(results):
    checks = {(c.metric, c.family): c for c in targets(summarize(results))}
    verdict = {k: c.passed for k, c in checks.items()}
    assert verdict[("median_abs_time_error", "standard_fwd")] is True
    assert verdict[("median_abs_time_error", "flash2_fwd")] is True  # 9% <= 10%
    assert verdict[("worst_abs_time_error", "flash2_fwd")] is False  # 40% > 30%
    assert verdict[("median_abs_time_error", "flash_bwd")] is False  # 17.5% > 10%
    assert verdict[("worst_abs_time_error", "flash_bwd")] is True
    assert verdict[("worst_abs_bytes_error", "standard_fwd")] is True  # 3% <= 5%
    assert verdict[("worst_abs_bytes_error", "flash2_fwd")] is False  # 6% > 5%
    assert verdict[("median_abs_time_error", "torch_sdpa_flash")] is True  # 10% <= 15%
    assert verdict[("median_abs_time_error", "torch_sdpa_cudnn")] is None  # no data
    assert checks[("worst_abs_time_error", "flash2_fwd")].value == pytest.approx(0.40)
    # The math backend has no target.
    assert not any(f == "torch_sdpa_math" for _, f in checks)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["meta"].pop("gpu"), "meta.gpu"),
    (lambda d: d["records"][0]["measured"].__setitem__("time_s", -1.0), "records.0.measured.time_s"),
    (lambda d: d["records"][1].__setitem__("family", "flash9_fwd"), "family"),
    (lambda d: d["records"][7].__setitem__("source", "ours"), "source"),
    (lambda d: d["records"][2]["config"].__setitem__("kv_heads", 5), "kv_heads"),
    (lambda d: d["records"][2]["config"].__setitem__("dtype", "fp64"), "records.2.config.dtype"),
    (lambda d: d["records"][3]["predicted"].pop("bound"), "records.3.predicted.bound"),
    (lambda d: d["records"][0]["measured"].__setitem__("time_samples_s", []), "records.0.measured.time_samples_s"),
    (lambda d: d["meta"].__setitem__("date", "yesterday"), "meta.date"),
    (lambda d: d["records"][0].__setitem__("extra_field", 1), "records.0.extra_field"),
])
def test_bad_results_rejected_naming_the_field(raw, mutate, field):
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ResultsError, match=field.replace(".", r"\.")):
        parse_results(data)


def test_bad_files_rejected(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match="one JSON object"):
        load_results(tmp_path / "b.json")
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(tmp_path / "missing.json")


# ---------------------------------------------------------------- Nsight Compute output

# Shaped like `ncu --csv --page raw --metrics ...` output (header, units row, ==PROF== lines
# and the program's own output around it); numbers invented.
NCU_RAW = '''==PROF== Connected to process 4242 (/usr/bin/python3.11)
validate: running 2 cases
==PROF== Profiling "validate_mark_begin": 0%....50%....100% - 1 pass
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum"
"","","","","","","","","","","","byte","Kbyte","usecond"
"0","4242","python3.11","127.0.0.1","_ZN6cudapy7kernels8validate19validate_mark_beginB2v1E","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","0","0","1.50"
"1","4242","python3.11","127.0.0.1","cudapy::kernels::flash2::fa2_forward[abi:v1](Array<float, 3, C, mutable, aligned>)","1","7","(128, 1, 1)","(64, 32, 1)","0","9.0","1,234,567,890","2,048.5","3,456.25"
"2","4242","python3.11","127.0.0.1","_ZN6cudapy7kernels8validate17validate_mark_endB2v1E","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","0","0","1.25"
==PROF== Disconnected from process 4242
'''

NCU_DETAILS = '''"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","7","python","h","void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>(Flash_fwd_params)","1","7","(128, 1, 1)","(8, 32, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","Mbyte","12.50"
"0","7","python","h","void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>(Flash_fwd_params)","1","7","(128, 1, 1)","(8, 32, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","4,096"
"0","7","python","h","void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>(Flash_fwd_params)","1","7","(128, 1, 1)","(8, 32, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","ms","1.25"
'''


def test_ncu_raw_page_parsed_with_units_and_separators():
    kernels = parse_ncu_csv(NCU_RAW)
    assert len(kernels) == 3
    k = kernels[1]
    assert k.dram_read_bytes == 1_234_567_890
    assert k.dram_write_bytes == pytest.approx(2048.5e3)  # Kbyte
    assert k.time_s == pytest.approx(3456.25e-6)  # usecond
    assert [short_kernel_name(x.name) for x in kernels] == ["validate_mark_begin", "fa2_forward", "validate_mark_end"]


def test_ncu_details_page_parsed():
    (k,) = parse_ncu_csv(NCU_DETAILS)
    assert (k.dram_read_bytes, k.dram_write_bytes, k.time_s) == pytest.approx((12.5e6, 4096, 1.25e-3))
    assert short_kernel_name(k.name) == "flash_fwd_kernel"


def test_ncu_output_without_csv_or_metrics_rejected():
    with pytest.raises(ValueError, match="no CSV header"):
        parse_ncu_csv("==PROF== ERR_NVGPUCTRPERM - The user does not have permission\n")
    header_only = NCU_RAW.replace(',"gpu__time_duration.sum"', "")
    with pytest.raises(ValueError, match="gpu__time_duration.sum"):
        parse_ncu_csv(header_only)


# ---------------------------------------------------------------- kernels/validate.py, no GPU


def test_sweep_covers_every_family_and_fills_the_gpu():
    from kernels.validate import HIDDEN, STANDARD_MAX_N, TOKENS, sweep

    full = sweep(quick=False)
    assert {c.family for c in full} == set(FAMILIES)
    for c in full:
        cfg = c.config
        if c.family in ("decode", "flash_decoding"):
            assert cfg.seq_len == 1 and cfg.kv_heads * 4 == cfg.heads
        else:
            assert cfg.batch * cfg.seq_len == TOKENS and cfg.heads * cfg.head_dim == HIDDEN
        if c.family == "standard_fwd":
            assert cfg.seq_len <= STANDARD_MAX_N
        if c.family == "window_fwd":
            assert cfg.causal and cfg.window < cfg.seq_len
        if c.source == "torch":
            assert cfg.dtype in ("fp16", "bf16")
        else:
            assert cfg.dtype == "fp32"
    assert {c.config.seq_len for c in full if c.family == "flash2_fwd"} == {512, 1024, 2048, 4096, 8192, 16384}
    assert {c.config.head_dim for c in full} == {64, 128}
    quick = sweep(quick=True)
    assert len(quick) < len(full) / 4
    assert {c.family for c in quick} == set(FAMILIES)


def test_sweep_filters_families_and_torch():
    from kernels.validate import sweep

    only = sweep(quick=True, families=("flash2_fwd", "decode"))
    assert {c.family for c in only} == {"flash2_fwd", "decode"}
    assert all(c.source == "ours" for c in sweep(quick=True, torch=False))


def test_prediction_assembled_from_a_simulator_result():
    from kernels.validate import prediction_from_simulation

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
    from costmodel.validation import NcuKernel
    from kernels.validate import build_record, sweep

    case = sweep(quick=True, families=("standard_fwd",))[0]
    kernels = [NcuKernel(name="scores", dram_read_bytes=100.0, dram_write_bytes=400.0, time_s=1e-3),
               NcuKernel(name="softmax", dram_read_bytes=400.0, dram_write_bytes=400.0, time_s=2e-3)]
    predicted = {"time_s": 3e-3, "hbm_bytes": 1300.0, "global_bytes": 1300.0, "bound": "hbm", "kernels": []}
    rec = build_record(case, 1e9, predicted, [3e-3, 1e-3, 2e-3], kernels, 1e-6)
    assert rec.measured.time_s == 2e-3  # the median
    assert (rec.measured.dram_read_bytes, rec.measured.dram_write_bytes) == (500.0, 800.0)
    assert rec.source == "ours" and rec.family == "standard_fwd"
    assert build_record(case, 1e9, predicted, [1e-3]).measured.dram_bytes is None


def test_ncu_output_split_per_case():
    from costmodel.validation import NcuKernel
    from kernels.validate import MARK_BEGIN, MARK_END, split_on_markers

    def k(name):
        return NcuKernel(name=name, dram_read_bytes=1, dram_write_bytes=1, time_s=1e-6)

    seq = [k(MARK_BEGIN), k("a"), k("b"), k(MARK_END), k("setup"), k(MARK_BEGIN), k(MARK_END), k(MARK_BEGIN), k("c")]
    groups = split_on_markers(seq, 4)
    assert [None if g is None else [x.name for x in g] for g in groups] == [["a", "b"], [], None, None]
    assert [x.name for x in split_on_markers(parse_ncu_csv(NCU_RAW), 1)[0]][0].startswith("cudapy::kernels::flash2")


def test_ncu_command():
    from kernels.validate import ncu_command

    cmd = ncu_command("/tmp/cases.json", "/tmp/ncu.csv")
    assert cmd[0] == "ncu"
    joined = " ".join(cmd)
    for part in ("--csv", "--page raw", "--clock-control none", "--log-file /tmp/ncu.csv",
                 "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum",
                 "-m kernels.validate --one /tmp/cases.json"):
        assert part in joined
    assert ncu_command("c.json", "l.csv", deadline=1234.4)[-2:] == ["--deadline", "1234"]


def test_case_round_trips_through_json():
    from kernels.validate import Case, sweep

    for case in sweep(quick=True):
        assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case


def test_one_case_runs_in_the_simulator_and_matches_the_reference(tmp_path):
    """The timed path and the ncu child path on a tiny FA2 case (CUDA simulator; timings meaningless)."""
    from costmodel.validation import Config
    from kernels.validate import Case, run_case, run_once_for_ncu

    cfg = Config(batch=1, heads=2, kv_heads=1, seq_len=32, kv_len=32, head_dim=32, dtype="fp32", causal=True,
                 block_r=16, block_c=16)
    case = Case("flash2_fwd", cfg)
    samples, rel_err = run_case(case, repeats=1, warmup=0)
    assert len(samples) == 1 and samples[0] > 0
    assert rel_err < 1e-5
    # A case the API cannot run still gets its marker pair, and the status says it failed.
    bad = Case("flash2_fwd", cfg.model_copy(update={"head_dim": 48}))
    status = tmp_path / "cases.json.status"
    run_once_for_ncu([bad, case], status)
    assert json.loads(status.read_text()) == [False, True]


FAKE_NCU = '''#!{python}
"""Stands in for ncu: runs the profiled command, then writes a raw-page CSV with made-up bytes."""
import subprocess, sys
args = sys.argv[1:]
log = args[args.index("--log-file") + 1]
subprocess.run(args[args.index("--log-file") + 2:], check=True)
head = '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum"'
rows = [head, '"","","","","","","","","","","","byte","byte","nsecond"']
for i, (name, r, w) in enumerate([("validate_mark_begin", 0, 0), ("fa2_forward", 1000, 250), ("validate_mark_end", 0, 0)]):
    rows.append(f'"{{i}}","1","python","h","{{name}}","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","{{r}}","{{w}}","1000"')
open(log, "w").write("==PROF== Connected\\n" + "\\n".join(rows) + "\\n")
'''


def test_validation_end_to_end_with_a_stand_in_ncu(tmp_path, monkeypatch):
    """The whole runner on one tiny case in the CUDA simulator, with a script in ncu's place that
    runs the real child process (python -m kernels.validate --one ...) and reports fixed bytes."""
    import sys

    from costmodel.report import write_report
    from costmodel.validation import Config
    from kernels import validate

    fake = tmp_path / "ncu"
    fake.write_text(FAKE_NCU.format(python=sys.executable))
    fake.chmod(0o755)
    case = validate.Case("flash2_fwd", Config(batch=1, heads=1, kv_heads=1, seq_len=32, kv_len=32, head_dim=32,
                                              dtype="fp32", causal=False, block_r=16, block_c=16))
    monkeypatch.setattr(validate, "sweep", lambda *a, **k: [case])
    results = validate.run_validation(spec_name="h100-sxm5-80gb", ncu=True, ncu_path=str(fake), repeats=1, warmup=0,
                                      command="pytest")
    (rec,) = results.records
    assert rec.family == "flash2_fwd" and rec.measured.rel_error_vs_reference < 1e-5
    assert (rec.measured.dram_read_bytes, rec.measured.dram_write_bytes) == (1000, 250)
    assert rec.flops > 0 and rec.predicted.time_s > 0 and rec.predicted.kernels
    assert results.meta.ncu and results.meta.gpu == "CUDA simulator" and results.meta.spec == "h100-sxm5-80gb"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results.model_dump(mode="json")))
    assert load_results(path).records[0].measured.dram_bytes == 1250
    write_report(load_results(path), tmp_path / "r.html", png=False)


# ---------------------------------------------------------------- merging, re-prediction, occupancy


def test_merge_keeps_the_last_measurement_of_a_configuration(raw):
    from costmodel.validation import merge_results

    first, second = parse_results(copy.deepcopy(raw)), copy.deepcopy(raw)
    second["meta"]["command"] = "second run"
    second["records"] = second["records"][:2]
    second["records"][0]["measured"]["time_s"] = 123.0
    second["meta"]["skipped"] = ["not run here: budget"]
    merged = merge_results([first, parse_results(second)])
    assert len(merged.records) == len(raw["records"])  # the two repeated configurations counted once
    label = f"{raw['records'][0]['family']} {merged.records[-2].config.label()}"
    assert f"{merged.records[-2].family} {merged.records[-2].config.label()}" == label
    assert merged.records[-2].measured.time_s == 123.0
    assert "second run" in merged.meta.notes[0] and "not run here: budget" in merged.meta.skipped


def test_merge_refuses_another_gpu(raw):
    from costmodel.validation import merge_results

    other = copy.deepcopy(raw)
    other["meta"]["gpu"] = "Some Other GPU"
    with pytest.raises(ResultsError, match="meta.gpu"):
        merge_results([parse_results(raw), parse_results(other)])


def _spec_with_tiled_rates(by_occupancy, value):
    from hardware_specs import load_gpu

    spec = load_gpu("h100-sxm5-80gb")
    info = {"numba_tiled_fp32_flops_per_s": {"value": value, "method": "test", "by_blocks_per_sm": by_occupancy}}
    return spec.model_copy(update={"calibration": info})


def test_fp32_efficiency_follows_the_measured_occupancy():
    from costmodel.validation import numba_fp32_efficiency

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
    from kernels.validate import Case, _cfg, predict_case, tiled_occupancy
    from simulators import simulate_attention

    spec = _spec_with_tiled_rates({1: 5e12, 2: 10e12, 4: 20e12}, 22e12)
    case = Case("flash1_fwd", _cfg(4, 32, 1024, 64, block_r=64, block_c=64))
    shape = dict(batch=4, heads=32, kv_heads=32, seq_len=1024, kv_len=1024, head_dim=64, causal=False, window=None)
    sim = simulate_attention(spec, "flash1_fwd", dtype="fp32", tensor_cores=False, block_r=64, block_c=64, **shape)
    main = max(sim.kernels, key=lambda k: k.matmul_flops + k.other_flops)
    assert main.blocks == 4 * 32
    occupancy, dram = tiled_occupancy(spec, sim)
    assert occupancy == pytest.approx(main.threads_per_block / 128)
    assert dram > 0.9  # every block streams its own head's K and V: no reuse for L2 to serve
    _, slow = predict_case(spec, case)
    _, fast = predict_case(_spec_with_tiled_rates({1: 20e12, 2: 20e12, 4: 20e12}, 22e12), case)
    assert slow["time_s"] > 2.0 * fast["time_s"]  # a quarter of the rate where FP32 binds


def test_repredict_keeps_measurements_and_replaces_predictions(results):
    from kernels.validate import repredict

    redone = repredict(results, "h100-sxm5-80gb")
    assert redone.meta.spec == "h100-sxm5-80gb" and "recomputed" in redone.meta.notes[-1]
    assert [r.measured for r in redone.records] == [r.measured for r in results.records]
    assert [r.predicted.time_s for r in redone.records] != [r.predicted.time_s for r in results.records]


def test_sweep_restricted_to_some_sequence_lengths_keeps_decode():
    from kernels.validate import sweep

    cases = sweep(seq_lens=(8192,))
    assert {c.config.seq_len for c in cases} == {1, 8192}
    assert {"decode", "flash_decoding", "flash2_fwd"} <= {c.family for c in cases}


def test_gpu_time_error_leaves_the_launch_cost_out(raw):
    """Nsight Compute times kernels on the GPU alone: the prediction it is held against is the
    predicted kernels' times less their (host-side) launch cost."""
    data = copy.deepcopy(raw)
    rec = data["records"][2]
    rec["predicted"]["kernels"] = [{"name": "fa2", "time_s": 1.5e-3, "hbm_bytes": 1.0, "bound": "fp32",
                                    "launch_s": 0.5e-3}]
    rec["measured"]["ncu_kernels"] = [{"name": "fa2", "dram_read_bytes": 1.0, "dram_write_bytes": 0.0,
                                       "time_s": 0.8e-3}]
    rows = compare(parse_results(data))
    assert rows[2].predicted_gpu_time_s == pytest.approx(1.0e-3)
    assert rows[2].measured_gpu_time_s == pytest.approx(0.8e-3)
    assert rows[2].gpu_time_error == pytest.approx(0.25)
    assert rows[4].gpu_time_error is None  # no ncu run: no GPU-time comparison
    s = summarize(parse_results(data))["flash2_fwd"]
    assert s.n_gpu_time >= 1 and s.worst_abs_gpu_time_error == pytest.approx(0.25)


@pytest.mark.parametrize("value", ["7", "4096,5", "", "a,b"])
def test_validate_seq_lens_outside_the_sweep_exit_2(value, capsys):
    from costmodel.cli import main

    with pytest.raises(SystemExit) as exit_:  # argparse's own exit for a bad option value
        main(["validate", "--seq-lens", value, "--repredict", str(SAMPLE), "--out", "/nonexistent/x.json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--seq-lens" in err and "allowed" in err
