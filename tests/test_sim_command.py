"""``ioaware attention``: JSON keys, the table, and bad shapes rejected naming the option."""

import json

import pytest

from costmodel.cli import main

BASE = ["attention", "--gpu", "a100-sxm4-40gb", "--batch", "2", "--heads", "8", "--seq-len", "512", "--head-dim", "64"]


def test_json_has_totals_kernels_config_and_grids(capsys):
    assert main(BASE + ["--causal", "--pass", "fwd+bwd", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("flops", "global_bytes", "hbm_bytes", "time_s", "bound", "kernels", "config", "assumptions"):
        assert key in data
    assert data["pass"] == "fwd+bwd" and data["impl"] == "flash2"
    for k in data["kernels"]:
        assert {"name", "grid", "flops", "global_bytes", "hbm_bytes", "time_s", "bound", "schedule"} <= set(k)
    assert data["kernels"][0]["grid"] == [data["schedule"]["t_r"], 16]


def test_table_names_kernels_and_grids(capsys):
    assert main(BASE + ["--impl", "standard-fused", "--dropout", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "fused_softmax" in out and "grids:" in out and "total" in out


@pytest.mark.parametrize("extra,option", [
    (["--kv-heads", "3"], "--kv-heads"),
    (["--head-dim", "1024", "--block-r", "64", "--block-c", "64"], "--head-dim"),
    (["--impl", "flash1", "--head-dim", "1024", "--block-r", "64", "--block-c", "64"], "--head-dim"),
    (["--impl", "flash-decoding", "--seq-len", "1", "--kv-len", "512", "--head-dim", "2048", "--block-c", "64"],
     "--head-dim"),
    (["--sram-bytes", "100"], "--sram-bytes"),  # M = 50 fp16 elements < 4 d
    (["--block-r", "0"], "--block-r"),
    (["--block-c", "-4"], "--block-c"),
    (["--impl", "flash-decoding", "--seq-len", "1", "--block-c", "0"], "--block-c"),
    (["--seq-len", "0"], "--seq-len"),
    (["--kv-len", "0"], "--kv-len"),
    (["--pattern", "nonsense"], "--pattern"),
    (["--dtype", "fp64"], "--dtype"),
    (["--impl", "flash3"], "--impl"),
    (["--pass", "both"], "--pass"),
    (["--impl", "flash-decoding", "--seq-len", "1", "--kv-len", "512", "--splits", "100"], "--splits"),
    (["--impl", "flash-decoding"], "--seq-len"),
])
def test_bad_input_exits_2_naming_the_option(capsys, extra, option):
    argv = list(BASE)
    for flag in ("--head-dim", "--seq-len"):  # the case's own value replaces the base one
        if flag in extra:
            i = argv.index(flag)
            del argv[i:i + 2]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert option in err and "allowed" in err
    assert err.count("\n") == 1 and err.startswith("ioaware attention: error: ")  # one line, no traceback


def test_seq_len_below_one_is_rejected(capsys):
    argv = ["attention", "--batch", "1", "--heads", "1", "--seq-len", "0", "--head-dim", "64"]
    assert main(argv) == 2
    assert "--seq-len: 0 is not allowed" in capsys.readouterr().err
