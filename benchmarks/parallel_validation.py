"""Predict the published multi-GPU runs (costmodel/parallel/published/*.yaml) and write their error table.

Run from the repository root: ``python3 benchmarks/parallel_validation.py``. Writes
costmodel/parallel/published/error_table.json (tests/test_parallel_published.py recomputes it) and
prints the table as markdown.
"""

import json
import os
import sys

sys.path.insert(0, os.getcwd())

from costmodel.cli.text import to_jsonable  # noqa: E402
from costmodel.parallel.published import error_table, markdown  # noqa: E402

table = error_table()
path = os.path.join("costmodel", "parallel", "published", "error_table.json")
with open(path, "w") as f:
    json.dump(to_jsonable(table), f, indent=1, sort_keys=True)
    f.write("\n")
print(markdown(table))
print(f"\nwrote {path}")
