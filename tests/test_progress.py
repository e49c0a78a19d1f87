"""costmodel/progress.py: a bar on a terminal, nothing with --json or when stdout is not a terminal."""

import io
import sys

import pytest

from costmodel.progress import NO_PROGRESS, progress, show_progress, track


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_shown_only_at_a_terminal_without_json():
    assert show_progress(False, _Tty()) is True
    assert show_progress(True, _Tty()) is False  # --json: one JSON object and nothing else
    assert show_progress(False, io.StringIO()) is False  # a pipe or a file
    assert show_progress(False, object()) is False  # no isatty at all


def test_silent_when_disabled():
    err = io.StringIO()
    with progress(3, "validate", enabled=False, stream=err) as bar:
        for i in range(3):
            bar.update(item=f"case {i}")
    assert err.getvalue() == "" and bar.done == 3
    assert list(track([1, 2], "x", enabled=False, stream=err)) == [1, 2] and err.getvalue() == ""
    NO_PROGRESS.update(item="x")
    NO_PROGRESS.write("a log line")  # the do-nothing instance swallows log lines too


def test_default_follows_stdout(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal
    with progress(2, "calibrate", stream=err) as bar:
        bar.update()
    assert err.getvalue() == ""


@pytest.mark.parametrize("with_tqdm", [True, False])
def test_counts_on_a_terminal(monkeypatch, with_tqdm):
    if with_tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain fallback
    err = io.StringIO()
    with progress(4, "validate", enabled=True, stream=err) as bar:
        for i in range(4):
            bar.update(item=f"flash2_fwd N{1024 * (i + 1)}")
        bar.write("skip flash1_fwd N8192: out of memory")
    text = err.getvalue()
    assert "validate" in text and "4/4" in text and "flash2_fwd N4096" in text
    assert "skip flash1_fwd N8192: out of memory\n" in text
    assert text.endswith("\n")


def test_track_counts_after_each_body(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    err = io.StringIO()
    seen = []
    for item in track(["a", "b", "c"], "search", enabled=True, stream=err):
        seen.append((item, err.getvalue().count("/3")))
    assert seen == [("a", 0), ("b", 1), ("c", 2)]  # the count moves once a body has finished
    assert "search 3/3  c" in err.getvalue()
