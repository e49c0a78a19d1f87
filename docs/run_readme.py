"""Re-run README.md's tour snippets and write what they print into the output block after each.

A snippet is a ```python block, or a ```sh block of one `ioaware ...` command, followed (after a
blank line) by a plain ``` block: that block is replaced by the snippet's stdout. Run from the
repository root: python3 docs/run_readme.py [--check] (--check: exit 1 if any output differs,
write nothing).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPET = re.compile(r"```(python|sh)\n((?:(?!```).)*?)```\n\n```\n((?:(?!```).)*?)```\n", re.S)


def run(kind: str, code: str) -> str:
    if kind == "python":
        argv = [sys.executable, "-c", code]
    else:
        lines = [ln for ln in code.strip().splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("ioaware "):
            return ""
        argv = [sys.executable, "-m", "costmodel.cli", *lines[0].split()[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=README.parent, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"snippet failed ({done.returncode}):\n{code}\n{done.stderr}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = ap.parse_args()
    text = README.read_text()
    changed = []

    def replace(m: re.Match) -> str:
        out = run(m.group(1), m.group(2))
        if not out:
            return m.group(0)
        if out != m.group(3):
            changed.append(m.group(2).strip().splitlines()[0])
        return f"```{m.group(1)}\n{m.group(2)}```\n\n```\n{out}```\n"

    new = SNIPPET.sub(replace, text)
    for first in changed:
        print(f"output changed: {first}")
    if args.check:
        return 1 if changed else 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
