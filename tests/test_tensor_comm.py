"""TP communication per layer against Korthikanti et al. 2022 §4.2.2 and Shoeybi et al. 2019 §3."""

import numpy as np
import pytest

from costmodel.parallel.tensor_comm import tp_collectives_per_layer, tp_message_bytes, tp_wire_bytes_per_layer


def test_counts():
    # "four all-reduces in a single forward and backward pass" / "four all-gathers and four reduce-scatters"
    assert tp_collectives_per_layer(False) == {"all_reduce": 4}
    sp = tp_collectives_per_layer(True)
    assert sp["reduce_scatter"] == 4 and sp["all_gather"] == 4 + 2  # + the backward re-gathers
    assert tp_collectives_per_layer(False, "full") == {"all_reduce": 6}  # the recomputed forward communicates again


@pytest.mark.parametrize("t", [2, 4, 8])
def test_sp_moves_the_same_bytes_as_all_reduce(t):
    # ring all-reduce = reduce-scatter + all-gather: each GPU sends 2(t-1)/t S per all-reduce, S = b s h x 2 bytes
    b, s, h = 1, 2048, 12288
    S = b * s * h * 2
    expected = 4 * 2 * (t - 1) / t * S
    assert tp_message_bytes(b, s, h) == S
    assert tp_wire_bytes_per_layer(b, s, h, t, False) == pytest.approx(expected)
    assert tp_wire_bytes_per_layer(b, s, h, t, True) == pytest.approx(expected)
    assert tp_wire_bytes_per_layer(b, s, h, t, True, count_gather_redo=True) == pytest.approx(expected * 1.25)


def test_broadcasts_over_micro_batch():
    out = tp_wire_bytes_per_layer(np.array([1, 2, 4]), 1024, 4096, 8, False)
    assert np.allclose(out / out[0], [1, 2, 4])
