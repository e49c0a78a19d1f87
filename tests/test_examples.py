"""Every script in examples/ runs, writes its files into --out and nothing anywhere else.

Each example is run as a user would run it (a subprocess, ``python examples/NAME.py --out DIR``)
from an empty working directory, so a file written relative to the working directory (the
default ``out/examples/NAME``) shows up as a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def test_there_are_examples():
    assert EXAMPLES, "examples/*.py found nothing"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_writes_only_into_out(script: Path, tmp_path: Path):
    out, cwd = tmp_path / "out" / script.stem, tmp_path / "cwd"
    cwd.mkdir()
    examples_before = _files(REPO / "examples")
    # The repository on the path, whether or not the package is installed (editable installs may point elsewhere).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script), "--out", str(out)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip(), "an example prints its key numbers"
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert written, f"{script.name} wrote nothing into {out}"
    assert all(p.stat().st_size > 0 for p in written), [p.name for p in written if p.stat().st_size == 0]
    assert not any(cwd.iterdir()), f"{script.name} wrote into its working directory: {sorted(cwd.rglob('*'))}"
    assert {p.name for p in tmp_path.iterdir()} == {"out", "cwd"}
    assert _files(REPO / "examples") == examples_before
