"""hardware_specs/device_names.py: the names drivers report, mapped to the bundled datasheet spec
(names as nvidia-smi / rocm-smi print them)."""
import pytest

from hardware_specs import list_gpus, load_gpu
from hardware_specs.device_names import spec_for_device


@pytest.mark.parametrize("device, spec", [
    ("NVIDIA H200", "h200-sxm-141gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm5-80gb"),
    ("NVIDIA H100 PCIe", "h100-pcie-80gb"),  # more words than plain "h100": the specific part wins
    ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
    ("NVIDIA L4", "l4"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
    ("AMD Instinct MI300X", "mi300x"),
])
def test_device_name_to_bundled_spec(device, spec):
    assert spec_for_device(device) == spec


def test_every_bundled_spec_names_its_devices():
    assert all(load_gpu(name).device_names for name in list_gpus())


def test_unknown_device_names_the_bundled_specs():
    with pytest.raises(ValueError, match="h200-sxm-141gb"):
        spec_for_device("Some Future GPU")
