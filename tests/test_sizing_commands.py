"""The sizing subcommands of ``ioaware`` (costmodel/sizing_commands.py), checked against numbers
obtained apart from the code: published parameter counts, the seed lecture's KV-cache example,
and KV and decode bounds worked by hand from the models' config.json."""

import contextlib
import io
import json

import pytest

from costmodel.cli import main


def run_json(argv: list[str]) -> dict:
    """Run ``ioaware argv --json``; its stdout must be exactly one JSON object."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv + ["--json"]) == 0
    text = out.getvalue()
    assert len(text.strip().splitlines()) == 1
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def exit_code_and_stderr(argv: list[str], capsys) -> tuple[int, str]:
    """Bad arguments stop argparse with SystemExit; bad values found later return 2."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


# --- published numbers ----------------------------------------------------------------------------


def test_params_gpt2_matches_the_hf_checkpoint():
    # openai-community/gpt2: sum(p.numel() for p in GPT2LMHeadModel.parameters()) = 124,439,808
    data = run_json(["params", "--model", "gpt2"])
    assert data["total_params"] == 124_439_808
    assert isinstance(data["total_params"], int)
    assert sum(data["components"].values()) == data["total_params"]


def test_kv_cache_gpt3_seed_example():
    # Seed lecture, module 5: 2 x 96 layers x 12288 (96 heads x 128) x 2 bytes ~ 4.7 MB per token, ~9.7 GB at 2K
    data = run_json(["kv-cache", "--model", "gpt3-175b", "--seq-len", "2048", "--batch", "1", "--dtype", "fp16"])
    assert data["bytes_per_token"] == 2 * 96 * 12288 * 2 == 4_718_592
    assert data["total_bytes"] == 4_718_592 * 2048
    assert data["total_bytes"] == pytest.approx(9.7e9, rel=0.01)


def test_kv_cache_llama2_70b_gqa_uses_the_8_kv_heads():
    # meta-llama/Llama-2-70b-hf config.json: num_hidden_layers 80, num_key_value_heads 8, 8192 / 64 heads = 128
    data = run_json(["kv-cache", "--model", "llama2-70b", "--seq-len", "4096", "--dtype", "fp16"])
    assert data["bytes_per_token"] == 2 * 80 * 8 * 128 * 2


def test_kv_cache_paged_and_max_batch_sections():
    data = run_json(["kv-cache", "--model", "llama2-7b", "--seq-len", "1000", "--batch", "4", "--block-size", "16",
                     "--gpu", "a100-sxm4-80gb"])
    per_token = 2 * 32 * 32 * 128 * 2  # Llama-2-7b: 32 layers, 32 heads of 128, fp16
    assert data["paged"]["paged_waste_bytes"] == 4 * (1008 - 1000) * per_token  # 63 blocks of 16 hold 1008
    assert data["paged"]["contiguous_waste_bytes"] == 4 * (4096 - 1000) * per_token
    weights = 6_738_415_616 * 2  # meta-llama/Llama-2-7b-hf parameter count, fp16
    assert data["max_batch"]["max_batch"] == (80 * 2**30 - weights) // (1000 * per_token)


# --- the sizing report -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sizing(tmp_path_factory):
    """One ``sizing --json`` run from an empty working folder, writing to a separate out folder."""
    root = tmp_path_factory.mktemp("sizing")
    cwd, out = root / "cwd", root / "out"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        data = run_json(["sizing", "--out", str(out)])
    return data, root, cwd, out


def test_sizing_writes_a_nonempty_html_plot_and_nothing_else(sizing):
    data, root, cwd, out = sizing
    files = [p for p in out.rglob("*") if p.is_file()]
    assert [str(p) for p in files] == data["files"]
    assert files[0].suffix == ".html" and files[0].stat().st_size > 0
    assert sorted(p.name for p in root.iterdir()) == ["cwd", "out"]
    assert list(cwd.iterdir()) == []


def test_sizing_decode_bound_llama2_7b_by_hand(sizing):
    """Weights (6,738,415,616 params, fp16) and a 4096-token fp16 KV cache read once over 2,039 GB/s."""
    data = sizing[0]
    row = next(m for m in data["models"] if m["model"] == "llama2-7b")
    hbm_bytes = 6_738_415_616 * 2 + 2 * 32 * 32 * 128 * 2 * 4096
    assert row["decode"]["hbm_bytes"] == hbm_bytes
    assert row["decode"]["time_s"] == pytest.approx(hbm_bytes / 2.039e12, rel=1e-12)
    assert row["decode"]["bound"] == "hbm"
    assert row["max_batch"] == (80 * 2**30 - 6_738_415_616 * 2) // (2 * 32 * 32 * 128 * 2 * 4096)


def test_sizing_places_the_lecture_examples(sizing):
    by_name = {p["name"]: p for p in sizing[0]["lecture_examples"]}
    matmul = by_name["lecture: 100x100 fp32 matmul"]
    scale = by_name["lecture: scale a 100x100 fp32 matrix"]
    assert matmul["intensity_flop_per_B"] == pytest.approx(25.0) and matmul["bound"] == "fp32"
    assert scale["intensity_flop_per_B"] == pytest.approx(0.25) and scale["bound"] == "hbm"


def test_sizing_70b_weights_do_not_fit_an_80gb_gpu(sizing):
    row = next(m for m in sizing[0]["models"] if m["model"] == "llama2-70b")
    assert row["weights_bytes"] > 80 * 2**30 and not row["weights_fit"] and row["max_batch"] == 0


def test_sizing_table_names_each_model(tmp_path, capsys):
    assert main(["sizing", "--model", "gpt2", "tinyllama-1.1b", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gpt2" in out and "tinyllama-1.1b" in out and "lecture" in out and "wrote" in out


# --- every subcommand's --json is one object; bad input exits 2 on one line -----------------------


@pytest.mark.parametrize("argv", [
    ["models"],
    ["flops", "--model", "llama2-7b", "--seq-len", "4096", "--tokens", "2e12", "--throughput-tokens-per-s", "3000"],
    ["flops", "--model", "gpt2", "--no-causal"],
    ["memory", "--model", "llama2-7b", "--batch", "2", "--seq-len", "2048", "--recompute", "selective",
     "--flash-attention", "--tensor-parallel", "2"],
])
def test_json_is_one_object(argv):
    run_json(argv)


def test_unknown_model_exits_2_naming_the_accepted_models(capsys):
    code, err = exit_code_and_stderr(["kv-cache", "--model", "gpt5", "--seq-len", "128"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "gpt5" in err and "llama2-70b" in err and "gpt3-175b" in err


def test_unknown_gpu_exits_2_naming_the_bundled_gpus(capsys, tmp_path):
    code, err = exit_code_and_stderr(["sizing", "--gpu", "b200", "--out", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "a100-sxm4-80gb" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["kv-cache", "--model", "gpt2", "--seq-len", "0"],
    ["memory", "--model", "llama2-7b", "--tensor-parallel", "3"],
    ["kv-cache", "--model", "gpt2", "--reserve-fraction", "1", "--gpu", "l4"],
])
def test_out_of_range_exits_2_on_one_line(capsys, argv):
    code, err = exit_code_and_stderr(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "accepted" in err


def test_invalid_model_file_names_field_value_and_what_is_allowed(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsource: test\nvocab_size: -1\nd_model: 64\nn_layers: 2\nn_heads: 4\n"
                    "ffn_dim: 256\nffn_type: relu\nnorm_type: rmsnorm\nattn_bias: false\nmlp_bias: false\n"
                    "tied_embeddings: false\nposition_embedding: rope\nmax_seq_len: 128\n")
    code, err = exit_code_and_stderr(["params", "--model", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "vocab_size" in err and "-1" in err and "greater than 0" in err
    assert "ffn_type" in err and "'relu'" in err and "swiglu" in err
