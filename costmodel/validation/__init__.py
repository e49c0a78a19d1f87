"""The validation harness: measure on a GPU, predict the same, and compare.

- ``families``: the table of what each validation family runs and how it is predicted.
- ``schema``: the results file (pydantic), reading and merging; ``compare``: errors,
  summaries per family, the targets.
- ``sweep``: the cases ``ioaware validate`` runs; ``predict``: the simulator's prediction
  of a case; ``run``: the GPU runner (and the child process Nsight Compute profiles);
  ``ncu``: the profiling run and its output.
- ``ceilings``, ``device``, ``calibrate``: ``ioaware calibrate``.
- ``report``: the HTML page; ``kernel_sweep`` / ``kernel_checks``, ``bench_decode``: GPU
  scripts that time the kernels alone.
- ``results/``: committed measurements; ``NOTES.md``: what was measured, and how.

Importing this package loads the results format, the comparison and the ncu reader only
(numpy, pydantic and the standard library); the GPU modules import numba and are loaded where they are used.
"""
from costmodel.validation.compare import TARGETS, ComparisonRow, FamilySummary, compare, relative_error, summarize, targets
from costmodel.validation.families import FAMILIES, OUR_FAMILIES, TORCH_FAMILIES
from costmodel.validation.ncu import parse_ncu_csv, short_kernel_name
from costmodel.validation.schema import (CaseConfig, Measured, Meta, NcuKernel, Predicted, PredictedKernel, Record, Results,
                                         ResultsError, load_results, merge_results, parse_results)

__all__ = [
    "FAMILIES", "OUR_FAMILIES", "TORCH_FAMILIES", "TARGETS",
    "CaseConfig", "Measured", "Meta", "NcuKernel", "Predicted", "PredictedKernel", "Record", "Results", "ResultsError",
    "load_results", "merge_results", "parse_results",
    "ComparisonRow", "FamilySummary", "compare", "relative_error", "summarize", "targets",
    "parse_ncu_csv", "short_kernel_name",
]
