"""costmodel/validation/sweep.py: the cases ``ioaware validate`` runs (no GPU)."""
import json
from pathlib import Path

import pytest

from costmodel.validation.families import FAMILIES
from costmodel.validation.sweep import HIDDEN, STANDARD_MAX_N, TOKENS, Case, sweep

SAMPLE = Path(__file__).parent / "data" / "validation_sample.json"


def test_sweep_covers_every_family_and_fills_the_gpu():
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
    only = sweep(quick=True, families=("flash2_fwd", "decode"))
    assert {c.family for c in only} == {"flash2_fwd", "decode"}
    assert all(c.source == "ours" for c in sweep(quick=True, torch=False))


def test_case_round_trips_through_json():
    for case in sweep(quick=True):
        assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case



def test_sweep_restricted_to_some_sequence_lengths_keeps_decode():
    cases = sweep(seq_lens=(8192,))
    assert {c.config.seq_len for c in cases} == {1, 8192}
    assert {"decode", "flash_decoding", "flash2_fwd"} <= {c.family for c in cases}



@pytest.mark.parametrize("value", ["7", "4096,5", "", "a,b"])
def test_validate_seq_lens_outside_the_sweep_exit_2(value, capsys):
    from costmodel.cli import main

    with pytest.raises(SystemExit) as exit_:  # argparse's own exit for a bad option value
        main(["validate", "--seq-lens", value, "--repredict", str(SAMPLE), "--out", "/nonexistent/x.json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--seq-lens" in err and "allowed" in err
