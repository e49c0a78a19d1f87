"""Test-wide settings.

The kernels are tested with numba's CUDA simulator unless a run asks for the
real GPU with NUMBA_ENABLE_CUDASIM=0. numba reads the variable when it is first
imported, so it is set here, before any test module imports numba.
"""
import os

from hypothesis import settings

# Property tests draw their examples deterministically (a seeded run, the same every time),
# as every other random input of the suite does; a test's own settings(...) still apply.
settings.register_profile("seeded", derandomize=True)
settings.load_profile("seeded")

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
