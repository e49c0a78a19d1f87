"""Measuring torch's attention implementations and fitting the timing model's parameters to them.

    grids     the calibration and held-out grids (disjoint), and the Nsight Compute subset
    records   the raw-sample file format (pydantic) and per-case medians
    ncu       the Nsight Compute command and the split of its CSV into cases by marker kernels
    gpu_run   the thin GPU runner (torch on CUDA): times every case, then profiles the subset
    fit       fitting the implementations' timing parameters on the calibration grid
    heldout   predicted against measured on the held-out grid: errors by implementation and pass

Everything but ``gpu_run`` runs on a CPU. (Kept apart from ``costmodel/validation.py`` while
that module moves into a package; it can move under it as ``costmodel/validation/implementations``.)
"""
