"""Cluster and interconnect specs: bundled files load, every number is sourced, derivations and overlays."""

import pytest
import yaml

from hardware_specs import SpecError, load_gpu
from hardware_specs.cluster import list_clusters, load_cluster, with_nodes
from hardware_specs.interconnect import Fabric, GPUInterconnect


def test_bundled_clusters_load_with_sources():
    assert {"dgx-a100", "dgx-h100"} <= set(list_clusters())
    for name in list_clusters():
        c = load_cluster(name)
        for key in ("nodes", "gpus_per_node", "nics_per_node", "nic_bandwidth_Bps", "gpu_tdp_W"):
            assert c.sources[key].strip(), (name, key)
        for fabric in (c.intra_node, c.inter_node):
            assert fabric.sources["bandwidth_per_gpu_Bps"].strip()
            assert fabric.sources["latency_s"].strip()


def test_dgx_datasheet_numbers():
    # DGX A100 datasheet: 8 x 200 Gb/s HDR per node; DGX H100: 8 x 400 Gb/s NDR; NVLink 600 / 900 GB/s both ways
    a, h = load_cluster("dgx-a100"), load_cluster("dgx-h100")
    assert a.gpus_per_node == h.gpus_per_node == 8
    assert a.inter_node.bandwidth_per_gpu_Bps == pytest.approx(200e9 / 8)
    assert h.inter_node.bandwidth_per_gpu_Bps == pytest.approx(400e9 / 8)
    assert a.intra_node.bandwidth_per_gpu_Bps == pytest.approx(600e9 / 2)
    assert h.intra_node.bandwidth_per_gpu_Bps == pytest.approx(900e9 / 2)
    assert h.total_gpus == 1024 and h.intra_node.nvls and not a.intra_node.nvls


def test_gpu_interconnect_matches_nvlink_total():
    # the per-direction NVLink figure is half the spec's (bidirectional) nvlink_bandwidth_Bps
    for name in ("a100-sxm4-80gb", "a100-sxm4-40gb", "h100-sxm5-80gb", "h200-sxm-141gb"):
        g = load_gpu(name)
        assert g.interconnect.nvlink_bandwidth_per_direction_Bps == pytest.approx(g.nvlink_bandwidth_Bps / 2)
        # links x 25 GB/s each way (NVLink 3 and 4 alike)
        assert g.interconnect.nvlink_links * 25e9 == pytest.approx(g.interconnect.nvlink_bandwidth_per_direction_Bps)


def test_unsourced_number_rejected():
    with pytest.raises(ValueError, match="no source"):
        GPUInterconnect.model_validate({"pcie_generation": 4, "pcie_bandwidth_per_direction_Bps": 32e9})
    with pytest.raises(ValueError, match="efficiency"):
        Fabric.model_validate({"kind": "nvlink", "bandwidth_per_gpu_Bps": {"value": 1e9, "source": "x"},
                               "latency_s": {"value": 0, "source": "x"},
                               "efficiency": {"all_reduce": {"value": 1.5, "source": "x"}}})


def test_unknown_cluster_names_the_field():
    with pytest.raises(SpecError, match="cluster: unknown cluster 'nope'"):
        load_cluster("nope")


def test_measured_overlay(tmp_path):
    overlay = {"base": "dgx-h100", "intra_node": {
        "efficiency": {"all_reduce": {"value": 0.8, "measured": {"method": "sweep", "gpu": "H100", "date": "2026-12-01"}}},
        "latency_s": {"value": 5e-6, "measured": {"method": "sweep", "gpu": "H100", "date": "2026-12-01"}}}}
    p = tmp_path / "o.yaml"
    p.write_text(yaml.safe_dump(overlay))
    c = load_cluster(p)
    assert c.name == "dgx-h100-measured"
    assert c.intra_node.efficiency_for("all_reduce") == 0.8 and c.intra_node.latency_s == 5e-6
    assert c.intra_node.measured["latency_s"].gpu == "H100"
    assert c.inter_node == load_cluster("dgx-h100").inter_node


def test_with_nodes():
    c = load_cluster("dgx-h100")
    assert with_nodes(c, 64).nodes == 8
    assert with_nodes(c, 4).gpus_per_node == 4
    with pytest.raises(ValueError, match="gpus: 12"):
        with_nodes(c, 12)
    with pytest.raises(ValueError, match="exceeds"):
        with_nodes(c, 2048)


def test_overlay_rules(tmp_path):
    from importlib.resources import files

    (tmp_path / "mine.yaml").write_text(files("hardware_specs").joinpath("clusters", "dgx-a100.yaml").read_text())
    (tmp_path / "o.yaml").write_text("base: mine.yaml\nname: mine-measured\n")
    assert load_cluster(tmp_path / "o.yaml").name == "mine-measured"  # relative base: beside the overlay
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(SpecError, match="itself an overlay"):
        load_cluster(tmp_path / "self.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(SpecError, match="not a text file"):
        load_cluster(tmp_path / "bin.yaml")


def test_cluster_yaml_refuses_a_repeated_key(tmp_path):
    from importlib.resources import files

    text = files("hardware_specs").joinpath("clusters", "dgx-a100.yaml").read_text()
    (tmp_path / "dup.yaml").write_text(text + "\nname: typo\n")
    with pytest.raises(SpecError, match="'name' appears twice"):
        load_cluster(tmp_path / "dup.yaml")
