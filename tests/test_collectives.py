"""Collective times against nccl-tests' bus-bandwidth definitions (doc/PERFORMANCE.md) on constructed fabrics."""

import numpy as np
import pytest

from costmodel.parallel.collectives import bus_bandwidth, bus_factor, collective_time, group_span
from hardware_specs.interconnect import ClusterSpec

B_IN, B_NIC = 300e9, 25e9


def fabric(kind, bw, lat=0.0, base=0.0, nvls=False, ll=None):
    src = {"source": "test fabric"}
    out = {"kind": kind, "nvls": nvls, "bandwidth_per_gpu_Bps": {"value": bw, **src},
           "latency_s": {"value": lat, **src}, "base_latency_s": {"value": base, **src}}
    if ll:
        out.update({k: {"value": v, **src} for k, v in zip(("ll_latency_s", "ll_base_latency_s",
                                                             "ll_bandwidth_fraction"), ll)})
    return out


def cluster(lat_in=0.0, lat_out=0.0, base=0.0, nvls=False, gpn=8, nodes=16, ll_in=None, ll_out=None):
    src = {"source": "test"}
    return ClusterSpec.model_validate({
        "name": "test", "display_name": "test", "gpu": "a100-sxm4-80gb",
        "nodes": {"value": nodes, **src}, "gpus_per_node": {"value": gpn, **src}, "nics_per_node": {"value": gpn, **src},
        "nic_bandwidth_Bps": {"value": B_NIC, **src}, "gpu_tdp_W": {"value": 400, **src},
        "intra_node": fabric("nvlink", B_IN, lat_in, base, nvls, ll_in),
        "inter_node": fabric("infiniband", B_NIC, lat_out, base, ll=ll_out)})


def test_bus_factors_are_nccl_tests():
    n = np.array([2, 4, 8, 1024])
    assert np.allclose(bus_factor("all_reduce", n), 2 * (n - 1) / n)
    for c in ("all_gather", "reduce_scatter", "all_to_all"):
        assert np.allclose(bus_factor(c, n), (n - 1) / n)
    assert np.allclose(bus_factor("send_recv", n), 1)


@pytest.mark.parametrize("coll", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all"])
@pytest.mark.parametrize("n", [2, 4, 8])
def test_one_node_bus_bandwidth_is_the_link(coll, n):
    # without latency, a collective inside one NVLink node reaches busbw = the link's bandwidth
    c = cluster()
    S = np.array([1e6, 1e9])
    t = collective_time(c, coll, S, n, algorithm="ring" if coll != "all_to_all" else "auto")
    assert np.allclose(bus_bandwidth(coll, S, t, n), B_IN)


def test_send_recv_algbw_is_the_link():
    c = cluster()
    assert 1e9 / collective_time(c, "send_recv", 1e9, 2, 1, 1) == pytest.approx(B_IN)
    assert 1e9 / collective_time(c, "send_recv", 1e9, 2, 1, 2) == pytest.approx(B_NIC)


@pytest.mark.parametrize("local,expected", [(8, min(B_IN, 8 * B_NIC)), (4, 4 * B_NIC), (1, B_NIC)])
def test_multi_node_ring_bottleneck(local, expected):
    # local GPUs per node drive local NICs at once: busbw = min(NVLink, local x NIC)
    c = cluster()
    n = 64
    for coll in ("all_reduce", "all_gather", "reduce_scatter"):
        t = collective_time(c, coll, 4e9, n, local, n // local, algorithm="ring")
        assert bus_bandwidth(coll, 4e9, t, n) == pytest.approx(expected)


def test_all_to_all_across_nodes():
    # 2 nodes x 8: each rank sends 8/16 of its buffer over its own NIC, 7/16 over NVLink
    c = cluster()
    S = 1.6e9
    t = collective_time(c, "all_to_all", S, 16, 8, 2)
    assert t == pytest.approx(max(S * 7 / 16 / B_IN, S * 8 / 16 / B_NIC))


def test_ring_latency_counts_steps():
    # NCCL's latency model: 2(n-1) steps for all-reduce, of which 2(nodes-1) cross the network
    c = cluster(lat_in=1e-6, lat_out=10e-6, base=5e-6)
    t = collective_time(c, "all_reduce", 0.0, 32, 8, 4, algorithm="ring")
    assert t == pytest.approx(5e-6 + (2 * 31 - 2 * 3) * 1e-6 + 2 * 3 * 10e-6)
    t = collective_time(c, "all_gather", 0.0, 32, 8, 4)
    assert t == pytest.approx(5e-6 + (31 - 3) * 1e-6 + 3 * 10e-6)
    tree = collective_time(c, "all_reduce", 0.0, 32, 8, 4, algorithm="tree")
    assert tree == pytest.approx(5e-6 + 2 * (7 * 1e-6 + 2 * 10e-6))
    ring = 5e-6 + (2 * 31 - 2 * 3) * 1e-6 + 2 * 3 * 10e-6
    assert collective_time(c, "all_reduce", 0.0, 32, 8, 4) == pytest.approx(min(ring, tree))  # auto: NCCL's pick


def test_nvls_in_one_node_only():
    c = cluster(nvls=True)
    t = collective_time(c, "all_reduce", 1e9, 8, algorithm="nvls")
    assert t == pytest.approx(1e9 / B_IN)  # the switch reduces: each GPU sends and receives S once
    assert np.isinf(collective_time(c, "all_reduce", 1e9, 16, 8, 2, algorithm="nvls"))
    with pytest.raises(ValueError, match="nvls"):
        collective_time(cluster(), "all_reduce", 1e9, 8, algorithm="nvls")


def test_group_span_and_trivial_group():
    assert tuple(map(int, group_span(8, 1, 8))) == (8, 1)
    assert tuple(map(int, group_span(16, 2, 8))) == (4, 4)
    assert tuple(map(int, group_span(32, 8, 8))) == (1, 32)
    assert collective_time(cluster(lat_in=1e-6), "all_reduce", 1e9, 1) == 0.0


def test_bad_collective_named():
    with pytest.raises(ValueError, match="collective: unknown 'broadcastx'"):
        collective_time(cluster(), "broadcastx", 1, 2)


def test_ll_protocol_for_small_messages():
    # NCCL's LL protocol: lower latency, a quarter of the bandwidth; the faster of LL and Simple is taken
    c = cluster(lat_in=3e-6, base=8e-6, ll_in=(0.5e-6, 3e-6, 0.25), ll_out=(2e-6, 3e-6, 0.25))
    small = collective_time(c, "all_reduce", 0.0, 8, algorithm="ring")
    assert small == pytest.approx(3e-6 + 14 * 0.5e-6)
    S = 4e9
    big = collective_time(c, "all_reduce", S, 8, algorithm="ring")
    assert big == pytest.approx(8e-6 + 14 * 3e-6 + 2 * 7 / 8 * S / B_IN)
    mid = 1e6  # the crossover is where the two lines meet
    simple = 8e-6 + 14 * 3e-6 + 2 * 7 / 8 * mid / B_IN
    ll = 3e-6 + 14 * 0.5e-6 + 2 * 7 / 8 * mid / (0.25 * B_IN)
    assert collective_time(c, "all_reduce", mid, 8, algorithm="ring") == pytest.approx(min(simple, ll))


def test_hierarchical_phases():
    # RS inside the node, ring all-reduce of 1/local across nodes, AG inside: the 2D algorithm's three phases
    c = cluster()
    S, local, nodes = 8e9, 8, 16
    t = collective_time(c, "all_reduce", S, local * nodes, local, nodes, algorithm="hierarchical")
    expected = 2 * (S * 7 / 8 / B_IN + (S / 8) * 15 / 16 / B_NIC)
    assert t == pytest.approx(expected)
    # it moves no fewer bytes across nodes than the flat ring: per GPU 2(N-1)/N of S/local over its NIC
    ring = collective_time(c, "all_reduce", S, local * nodes, local, nodes, algorithm="ring")
    assert t > ring  # its NVLink phases do not overlap the network phase
