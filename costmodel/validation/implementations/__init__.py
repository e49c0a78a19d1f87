"""Measuring torch's attention implementations and fitting the timing model's parameters to them.

    grids     the calibration and held-out grids (disjoint), and the Nsight Compute subset
    records   the raw-sample file format (pydantic) and per-case medians
    ncu       the Nsight Compute command and the split of its CSV into cases by marker kernels
    gpu_run   the thin GPU runner (torch on CUDA): times every case, then profiles the subset
    fit       fitting the implementations' timing parameters on the calibration grid
    heldout   predicted against measured on the held-out grid: errors by implementation and pass

    command   ``ioaware validate --implementations`` (``--repredict``: no GPU)
    calibrate fit on the calibration grid, write the spec section, check on the held-out grid

Everything but ``gpu_run`` runs on a CPU; ``data/`` holds the H200 run of 2026-12-02 (raw samples,
Nsight Compute's CSV, the runner's log) and the held-out results it gives.
"""
