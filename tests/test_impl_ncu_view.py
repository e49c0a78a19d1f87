"""Nsight Compute's view of a prediction (costmodel/validation/implementations/ncu_view.py): memcpy
steps left out, each kernel's writes less the dirty L2 bytes its write counter misses."""

import statistics
from types import SimpleNamespace

import pytest

from costmodel.validation.implementations import ncu_view, records


def _result(*kernels):
    return SimpleNamespace(kernels=[SimpleNamespace(name=n, hbm_read_bytes=r, hbm_write_bytes=w, time_s=t)
                                    for n, r, w, t in kernels])


def test_writes_lose_the_dirty_bytes_and_never_go_negative():
    r = _result(("a", 100e6, 80e6, 1e-3), ("b", 10e6, 5e6, 2e-4))
    nbytes, gpu_s = ncu_view.kernel_view("torch-flash", r, 20e6)
    assert nbytes == pytest.approx(100e6 + 60e6 + 10e6 + 0.0)
    assert gpu_s == pytest.approx(1.2e-3)
    assert ncu_view.kernel_view("torch-flash", r, 0.0)[0] == pytest.approx(195e6)


def test_memcpy_steps_are_no_kernels():
    """torch-eager's masked_fill clone is a cudaMemcpyAsync: Nsight Compute profiles no kernel for it."""
    r = _result(("masked_fill_clone", 50e6, 50e6, 1e-4), ("softmax", 50e6, 50e6, 1e-4))
    assert ncu_view.kernel_view("torch-eager", r, 0.0) == pytest.approx((100e6, 1e-4))


def test_fit_recovers_a_constructed_dirty_share():
    """Measurements made from known predictions with D = 12 MB: the grid search finds 12 MB."""
    preds = []
    for w in (30e6, 60e6, 120e6, 240e6):
        r = _result(("k", 2 * w, w, 1e-3))
        preds.append(("torch-flash", r, 2 * w + (w - 12e6)))
    assert ncu_view.fit_dirty_bytes(preds) == pytest.approx(12e6)


def test_committed_dirty_share_matches_the_copies_write_deficit():
    """Independent of the fit: torch's strided copies read and write the same bytes, so Nsight Compute's
    read - write for each of them is the dirty share directly. Their median over the committed profiles
    is within 20 % of the D fitted on whole calls, and below the H200's 60 MiB L2."""
    deficits = []
    for p in records.profiles(records.load(records.RAWS)) + records.profiles(records.load(records.BWD_NCU), None):
        for k in p.kernels:
            if "direct_copy" in k["name"] and "elementwise_kernel<128, 4" in k["name"] and p.case.pass_ == "fwd+bwd":
                deficits.append(k["dram_read_bytes"] - k["dram_write_bytes"])
    assert len(deficits) >= 40
    d = ncu_view.dirty_l2_bytes()
    assert 0 < d < 60 * 2**20
    assert statistics.median(deficits) == pytest.approx(d, rel=0.2)
