"""costmodel/validation/run.py in numba's CUDA simulator: one case timed and checked, and the
whole runner with a stand-in for ncu (timings meaningless there)."""
import json

from costmodel.validation.schema import CaseConfig, load_results


def test_one_case_runs_in_the_simulator_and_matches_the_reference(tmp_path):
    """The timed path and the ncu child path on a tiny FA2 case (CUDA simulator; timings meaningless)."""
    from costmodel.validation.run import run_case, run_once_for_ncu
    from costmodel.validation.sweep import Case

    cfg = CaseConfig(batch=1, heads=2, kv_heads=1, seq_len=32, kv_len=32, head_dim=32, dtype="fp32", causal=True,
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
    runs the real child process (python -m costmodel.validation.run --one ...) and reports fixed bytes."""
    import sys

    from costmodel.validation import run as validate
    from costmodel.validation.report import write_report
    from costmodel.validation.sweep import Case

    fake = tmp_path / "ncu"
    fake.write_text(FAKE_NCU.format(python=sys.executable))
    fake.chmod(0o755)
    case = Case("flash2_fwd", CaseConfig(batch=1, heads=1, kv_heads=1, seq_len=32, kv_len=32, head_dim=32,
                                              dtype="fp32", causal=False, block_r=16, block_c=16))
    monkeypatch.setattr(validate, "sweep", lambda *a, **k: [case])
    import io

    from costmodel.progress import Progress

    err = io.StringIO()
    bar = Progress(None, "validate", enabled=True, stream=err)  # as `ioaware validate` on a terminal
    results = validate.run_validation(spec_name="h100-sxm5-80gb", ncu=True, ncu_path=str(fake), repeats=1, warmup=0,
                                      command="pytest", progress=bar)
    bar.close()
    assert (bar.total, bar.done) == (1, 1) and "1/1" in err.getvalue() and case.label() in err.getvalue()
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
