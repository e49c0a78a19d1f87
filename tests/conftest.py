"""Test-wide settings.

The kernels are tested with numba's CUDA simulator unless a run asks for the
real GPU with NUMBA_ENABLE_CUDASIM=0. numba reads the variable when it is first
imported, so it is set here, before any test module imports numba; Triton's
interpreter likewise (TRITON_INTERPRET).
"""
import os

from hypothesis import settings

# Property tests draw their examples deterministically (a seeded run, the same every time),
# as every other random input of the suite does; a test's own settings(...) still apply.
settings.register_profile("seeded", derandomize=True)
settings.load_profile("seeded")

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# The serving loop's Triton kernel (costmodel.validation.paged_attention) runs in Triton's
# interpreter on the CPU; triton reads the variable when a kernel is decorated, at import.
os.environ.setdefault("TRITON_INTERPRET", "1")

# Browser tests (tests/test_app_browser.py) drive Debian's chromium through Dash's testing
# plugin; this hook gives it the flags a headless root run on a closed network needs
# (without the background-networking ones Chromium keeps dialling out and stalls).
try:
    import dash.testing.plugin  # noqa: F401  (registers the pytest_setup_options hook)
except ImportError:
    pass
else:
    def pytest_setup_options():
        from selenium.webdriver.chrome.options import Options

        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1400,1800"):
            options.add_argument(flag)
        return options
