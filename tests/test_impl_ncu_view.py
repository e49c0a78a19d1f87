"""Nsight Compute's view of a prediction (costmodel/validation/implementations/ncu_view.py): memcpy
steps left out, each kernel's writes less the dirty L2 bytes its write counter misses."""

import statistics
from types import SimpleNamespace

import pytest

from costmodel.validation.implementations import ncu_view, records


def _result(*kernels):
    return SimpleNamespace(kernels=[SimpleNamespace(name=n, hbm_read_bytes=r, hbm_write_bytes=w, time_s=t)
                                    for n, r, w, t in kernels])


def test_writes_lose_their_dirty_share_and_never_go_negative():
    """By hand, C = 90 MB, D_max = 30 MB: kernel a (100 MB read, 80 written) leaves min(30, 90 x 80 / 180 = 40)
    = 30 MB dirty, kernel b (10 + 5 MB) min(30, 90 x 5 / 15 = 30) = 30 MB, more than it wrote."""
    r = _result(("a", 100e6, 80e6, 1e-3), ("b", 10e6, 5e6, 2e-4))
    nbytes, gpu_s = ncu_view.kernel_view("torch-flash", r, ncu_view.DirtyL2(90e6, 30e6))
    assert nbytes == pytest.approx(100e6 + 50e6 + 10e6 + 0.0)
    assert gpu_s == pytest.approx(1.2e-3)
    assert ncu_view.kernel_view("torch-flash", r, ncu_view.NONE)[0] == pytest.approx(195e6)


def test_memcpy_steps_are_no_kernels():
    """torch-eager's masked_fill clone is a cudaMemcpyAsync: Nsight Compute profiles no kernel for it."""
    r = _result(("masked_fill_clone", 50e6, 50e6, 1e-4), ("softmax", 50e6, 50e6, 1e-4))
    assert ncu_view.kernel_view("torch-eager", r, ncu_view.NONE) == pytest.approx((100e6, 1e-4))


def test_fit_recovers_a_constructed_dirty_l2():
    """Measurements made from known kernels with C = 40 MB, D_max = 30 MB: a fill (writes only: 30 MB
    dirty), a copy (half writes: 20 MB), a forward (a quarter writes: 10 MB), in every mix of the three
    (each mix pins a different sum of the three shares); the grid search finds (40, 30) MB."""
    kinds = {"fill": (0.0, 200e6, 30e6), "copy": (150e6, 150e6, 20e6), "fwd": (300e6, 100e6, 10e6)}
    preds = []
    for mix in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]):
        ks = [(n, *kinds[n][:2], 1e-3) for n, use in zip(kinds, mix) if use]
        seen = sum(kinds[n][0] + kinds[n][1] - kinds[n][2] for n, use in zip(kinds, mix) if use)
        preds.append(("torch-flash", _result(*ks), seen))
    v = ncu_view.fit_dirty_l2(preds)
    assert (v.resident_bytes, v.max_dirty_bytes) == pytest.approx((40e6, 30e6))


def _deficits(match):
    out = []
    for p in records.profiles(records.load(records.RAWS)) + records.profiles(records.load(records.BWD_NCU), None):
        out += [(p, k) for k in p.kernels if match(p, k)]
    return out


def test_committed_dirty_l2_matches_the_copies_and_the_fills():
    """Independent of the fit on whole calls: torch's strided copies read and write the same bytes, so
    Nsight Compute's read - write for each is its dirty share directly, min(D_max, C / 2) in the model; the
    memory-efficient backward's workspace fill only writes, so the bytes it should write (the fp32 dQ
    accumulator, B H N d x 4) less what was counted is min(D_max, C). Both medians within 20 % of the
    committed fit, which lies below the H200's 60 MiB L2."""
    v = ncu_view.dirty_l2()
    assert 0 < v.max_dirty_bytes <= v.resident_bytes < 60 * 2**20
    copies = [k["dram_read_bytes"] - k["dram_write_bytes"] for p, k in _deficits(
        lambda p, k: "direct_copy" in k["name"] and "elementwise_kernel<128, 4" in k["name"] and p.case.pass_ == "fwd+bwd")]
    assert len(copies) >= 40
    assert statistics.median(copies) == pytest.approx(min(v.max_dirty_bytes, v.resident_bytes / 2), rel=0.2)
    fills = []
    for p, k in _deficits(lambda p, k: p.case.impl == "torch-efficient" and "FillFunctor<unsigned char>" in k["name"]
                          and p.case.shape.head_dim <= 128):
        s = p.case.shape
        fills.append(s.batch * s.heads * s.seq_len * s.head_dim * 4 - k["dram_write_bytes"])
    assert len(fills) >= 10
    assert statistics.median(fills) == pytest.approx(min(v.max_dirty_bytes, v.resident_bytes), rel=0.2)
