"""The ``ioaware`` command line: ``main`` builds the parser from one module per command group.

    args       shared argument types and the one-line error for bad input
    text       shared output formatting (JSON-able values, tables, SI numbers)
    hardware   gpus, roofline
    sizing     models, params, flops, kv-cache, memory, sizing
    attention  attention (the IO simulator)
    measure    calibrate, validate, report (the validation harness)
"""

from costmodel.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
