"""The multi-GPU command line: search, train-run and predict's --cluster hook; bad input exits 2 naming the option."""

import argparse
import json

import pytest

from costmodel.cli import parallel_args
from costmodel.cli.main import main


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_search_small(capsys, tmp_path):
    out = run_json(capsys, ["search", "--model", "llama2-7b", "--cluster", "dgx-a100", "--gpus", "16",
                            "--global-batch", "32", "--seq-len", "2048", "--max-micro-batch", "2",
                            "--plot", str(tmp_path / "s.html")])
    assert out["fitting"] > 0 and out["count"] >= out["fitting"]
    best = out["best"]
    assert [b["time_s"] for b in best] == sorted(b["time_s"] for b in best)
    assert all(b["memory_bytes"] <= out["memory_limit_bytes"] for b in best)
    assert all(b["tp"] * b["pp"] * b["dp"] == 16 for b in best)
    front = out["pareto_front"]
    assert [f["memory_bytes"] for f in front] == sorted(f["memory_bytes"] for f in front)
    assert (tmp_path / "s.html").exists()


def test_search_cost_objective_prefers_fewer_gpus_per_token(capsys):
    out = run_json(capsys, ["search", "--model", "llama2-7b", "--cluster", "dgx-a100", "--gpus", "8", "16",
                            "--global-batch", "32", "--seq-len", "2048", "--max-micro-batch", "2", "--no-plot",
                            "--objective", "cost"])
    b = out["best"]
    cost = [x["time_s"] * x["gpus"] for x in b]
    assert cost == sorted(cost)


def test_train_run_tokens(capsys):
    out = run_json(capsys, ["train-run", "--model", "llama2-7b", "--cluster", "dgx-a100", "--gpus", "16",
                            "--seq-len", "2048", "--global-batch", "32", "--tp", "2", "--pp", "2", "--tokens", "1e9"])
    it, r = out["iteration"], out["run"]
    assert r["iterations"] == -(-int(1e9) // (32 * 2048))
    assert r["wall_clock_s"] == pytest.approx(r["iterations"] * it["time_s"])
    assert r["gpu_hours"] == pytest.approx(r["wall_clock_s"] * 16 / 3600)
    assert r["gpu_energy_J"] == pytest.approx(r["gpu_hours"] * 3600 * 400)  # A100 SXM TDP 400 W


def test_chinchilla_split():
    # Hoffmann et al. 2022 Approach 3: N_opt ∝ C^0.452 and D_opt ∝ C^0.548 (a = β/(α+β), b = α/(α+β)); 6 N D = C
    from costmodel.parallel.training_run import compute_optimal

    n1, d1 = compute_optimal(1e24)
    n2, d2 = compute_optimal(1e25)
    assert 6 * n1 * d1 == pytest.approx(1e24)
    assert n2 / n1 == pytest.approx(10 ** (0.28 / 0.62))
    assert d2 / d1 == pytest.approx(10 ** (0.34 / 0.62))


def test_predict_hook():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    parallel_args.add_arguments(p)  # skips --model, which the host has
    args = p.parse_args(["--model", "llama2-7b", "--seq-len", "2048", "--global-batch", "32", "--tp", "2",
                         "--gpus", "16", "--cluster", "dgx-a100"])
    assert parallel_args.wants_parallel(args)
    data, text = parallel_args.run(args)
    assert data["layout"]["sequence_parallel"] is True and data["dp"] == 8
    for key in ("time_s", "tokens_per_s", "model_tflops_per_gpu", "mfu", "memory_bytes"):
        assert data[key] > 0
    assert "MFU" in text


def test_predict_hook_inference():
    p = argparse.ArgumentParser()
    parallel_args.add_arguments(p)
    common = ["--model", "llama2-7b", "--seq-len", "1024", "--batch", "4", "--cluster", "dgx-a100"]
    one = parallel_args.run(p.parse_args(common + ["--phase", "decode", "--gpus", "1"]))[0]
    tp = parallel_args.run(p.parse_args(common + ["--phase", "decode", "--tp", "4", "--gpus", "4"]))[0]
    assert one["breakdown"]["tp_comm_s"] == 0 and tp["breakdown"]["tp_comm_s"] > 0
    assert tp["memory_bytes"] < one["memory_bytes"]  # weights and KV split 4 ways
    pp = parallel_args.run(p.parse_args(common + ["--phase", "prefill", "--pp", "2", "--gpus", "2"]))[0]
    assert pp["tokens_per_s"] > pp["batch"] * 1024 / pp["time_s"]  # two batches in flight


@pytest.mark.parametrize("argv,needle", [
    (["search", "--model", "llama2-7b", "--cluster", "nope", "--global-batch", "8", "--seq-len", "8"], "--cluster"),
    (["search", "--model", "llama2-7b", "--cluster", "dgx-a100", "--global-batch", "8", "--seq-len", "8",
      "--gpus", "12"], "gpus: 12"),
    (["train-run", "--model", "llama2-7b", "--cluster", "dgx-a100", "--gpus", "16", "--seq-len", "2048",
      "--global-batch", "30", "--tokens", "1e9"], "global_batch"),
])
def test_bad_input_exits_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_ray_path():
    ray = pytest.importorskip("ray")  # optional extra: runs where `pip install 'ioaware[ray]'` was done
    from costmodel.parallel.search import search_layouts

    kw = dict(global_batch=16, seq_len=1024, gpus=[8], max_micro_batch=1, recomputes=("none",))
    local = search_layouts("llama2-7b", "dgx-a100", **kw)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = search_layouts("llama2-7b", "dgx-a100", ray_address="auto", **kw)
    finally:
        ray.shutdown()
    assert list(remote["order"]) == list(local["order"])
    assert list(remote["table"]["time_s"]) == list(local["table"]["time_s"])


@pytest.mark.parametrize("command,base", [
    ("search", ["--model", "llama2-7b", "--cluster", "dgx-a100", "--global-batch", "8", "--seq-len", "8", "--no-plot"]),
    ("train-run", ["--model", "llama2-7b", "--cluster", "dgx-a100", "--seq-len", "8", "--global-batch", "8",
                   "--tokens", "1e6"]),
    ("predict", ["--model", "llama2-7b", "--phase", "train", "--cluster", "dgx-a100", "--gpus", "8", "--seq-len", "8",
                 "--global-batch", "8"]),
])
def test_nasty_numbers_exit_2_with_json_error(command, base, capsys):
    from costmodel.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    options = sorted(o for a in sub._actions if a.type is not None and a.nargs is None and a.choices is None
                     for o in a.option_strings if o.startswith("--") and o not in ("--model", "--cluster", "--plot", "--ray"))
    assert "--global-batch" in options
    if command == "predict":
        options = [o for o in options if o in ("--gpus", "--global-batch", "--micro-batch", "--tp", "--pp",
                                                "--virtual-stages", "--seq-len")]
    for opt in options:
        for bad in ("-1", "nan", "1e400", "abc"):
            argv = [command] + [a for i, a in enumerate(base) if not (a == opt or (i and base[i - 1] == opt))]
            try:
                rc = main(argv + [opt, bad, "--json"])
            except SystemExit as exc:
                rc = exc.code
            out, err = capsys.readouterr()
            assert rc == 2, (opt, bad, out)
            assert json.loads(out)["error"] and err.count("\n") == 1, (opt, bad)


def test_clusters_command(capsys):
    out = run_json(capsys, ["clusters"])
    assert {"dgx-a100", "dgx-h100"} <= set(out["clusters"])
    assert out["clusters"]["dgx-h100"]["inter_node"]["bandwidth_per_gpu_Bps"] == 50e9


def test_decode_tp_communication_is_two_all_reduces_per_layer():
    # Shoeybi et al. 2019 §3: one all-reduce after attention and one after the MLP, forward only
    from costmodel.models import load_model
    from costmodel.parallel.collectives import collective_time
    from costmodel.parallel.inference import predict_inference
    from hardware_specs.cluster import load_cluster, with_nodes

    cfg = load_model("llama2-7b")
    r = predict_inference(cfg, "dgx-h100", phase="decode", batch=16, seq_len=2048, tp=8)
    ar = collective_time(with_nodes(load_cluster("dgx-h100"), 8), "all_reduce", 16 * 1 * cfg.d_model * 2, 8)
    assert r.breakdown["tp_comm_s"] == pytest.approx(2 * cfg.n_layers * float(ar))


def test_predict_command_many_gpus(capsys):
    out = run_json(capsys, ["predict", "--model", "llama2-7b", "--phase", "train", "--seq-len", "2048",
                            "--global-batch", "32", "--micro-batch", "2", "--tp", "2", "--pp", "2", "--gpus", "16",
                            "--cluster", "dgx-a100", "--schedule", "interleaved", "--virtual-stages", "2",
                            "--recompute", "selective"])
    assert out["layout"]["schedule"] == "interleaved" and out["dp"] == 4 and out["micro_batches"] == 4
    assert out["bubble_fraction"] == pytest.approx(1 / (2 * 4 + 1))  # (p-1)/(v m + p - 1)
    for key in ("time_s", "tokens_per_s", "model_tflops_per_gpu", "mfu", "memory_bytes"):
        assert out[key] > 0
    assert main(["predict", "--model", "llama2-7b", "--phase", "train", "--seq-len", "2048", "--gpus", "16"]) == 2
    assert "--cluster" in capsys.readouterr().err


def test_process_pool_gives_the_same_table():
    from costmodel.parallel.search import search_layouts

    kw = dict(global_batch=16, seq_len=1024, gpus=[8], max_micro_batch=2, recomputes=("none", "full"))
    one = search_layouts("llama2-7b", "dgx-a100", **kw)
    pool = search_layouts("llama2-7b", "dgx-a100", workers=2, **kw)
    assert list(pool["order"]) == list(one["order"])
    assert list(pool["table"]["time_s"]) == list(one["table"]["time_s"])
