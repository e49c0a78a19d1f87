"""Workloads: the DIST strings, Poisson arrivals and trace files."""

import numpy as np
import pytest

from costmodel.serving.workload import load_trace, parse_dist, poisson_workload, save_trace

SEED = 11


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("uniform:5", "two bounds"),
    ("uniform:10:5", "1 <= A <= B"),
    ("uniform:0:5", "1 <= A <= B"),
    ("uniform:a:b", "not a number"),
    ("uniform:1.5:4", "whole numbers"),
    ("lognormal:100", "mean and a sigma"),
    ("lognormal:0:1", "MEAN >= 1"),
    ("lognormal:100:-1", "SIGMA >= 0"),
    ("normal:1:2", "not a number, a known form or an existing file"),
    ("0", "whole number >= 1"),
    ("2.5", "whole number >= 1"),
    ("nan", "whole number >= 1"),
])
def test_dist_errors_name_the_field(text, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_dist(text, "prompt_len")
    assert str(err.value).startswith("prompt_len:")


def test_dist_forms_draw_what_they_say():
    rng = np.random.default_rng(SEED)
    assert np.all(parse_dist("300")(rng, 5) == 300)
    u = parse_dist("uniform:10:20")(rng, 20000)
    assert u.min() == 10 and u.max() == 20 and u.mean() == pytest.approx(15, rel=0.01)
    ln = parse_dist("lognormal:500:0.6")(rng, 200000)
    assert ln.mean() == pytest.approx(500, rel=0.01) and ln.min() >= 1


def test_length_file_and_trace_round_trip(tmp_path):
    (tmp_path / "lens.txt").write_text("# lengths\n100\n200\n")
    assert set(parse_dist(str(tmp_path / "lens.txt"))(np.random.default_rng(SEED), 50)) == {100, 200}
    (tmp_path / "bad.txt").write_text("100\nx\n")
    with pytest.raises(ValueError, match=r"output_len: .*bad.txt row 2"):
        parse_dist(str(tmp_path / "bad.txt"), "output_len")
    w = poisson_workload(3.0, 50, "uniform:1:9", "7", seed=SEED)
    back = load_trace(save_trace(w, tmp_path / "t.csv"))
    np.testing.assert_array_equal(back.arrival_s, w.arrival_s)
    np.testing.assert_array_equal(back.prompt_len, w.prompt_len)
    assert set(parse_dist(str(tmp_path / "t.csv"), "prompt_len")(np.random.default_rng(SEED), 40)) <= set(w.prompt_len)
    (tmp_path / "t.jsonl").write_text('{"arrival_s": 1.0, "prompt_len": 4, "output_len": 2}\n'
                                      '{"arrival_s": 0.5, "prompt_len": 8, "output_len": 1}\n')
    j = load_trace(tmp_path / "t.jsonl")
    assert list(j.arrival_s) == [0.5, 1.0] and list(j.prompt_len) == [8, 4]
    (tmp_path / "short.csv").write_text("arrival_s,prompt_len\n0,4\n")
    with pytest.raises(ValueError, match="lacks column"):
        load_trace(tmp_path / "short.csv")


def test_poisson_gaps_have_the_rate_and_lengths_are_capped():
    w = poisson_workload(8.0, 40000, "4000", "uniform:1:8000", seed=SEED, max_seq_len=8192)
    gaps = np.diff(w.arrival_s)
    assert gaps.mean() == pytest.approx(1 / 8.0, rel=0.02) and gaps.std() == pytest.approx(1 / 8.0, rel=0.03)
    assert np.all(w.prompt_len + w.output_len <= 8192) and "cut to max_seq_len" in w.source
    with pytest.raises(ValueError, match="rate_per_s"):
        poisson_workload(0.0, 10)
