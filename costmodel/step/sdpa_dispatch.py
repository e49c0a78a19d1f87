"""Which SDPA backend ``torch.nn.functional.scaled_dot_product_attention`` runs, by default.

torch 2.11's rule (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp): ``priority_order``
starts from flash -> efficient -> math -> cudnn, and ``check_prefer_cudnn_attention()`` moves
cuDNN to the front when the build's cuDNN is >= 9.9 (90900), the device is compute capability
9.0 or 10.0 (``major in (9, 10) and minor == 0``) and ``TORCH_CUDNN_SDPA_PREFERRED`` is not set
to 0. The first backend whose constraints pass wins: cuDNN needs fp16/bf16, equal q/k head
dims that are multiples of 8 and at most 256; flash also no explicit mask.

Checked on the H200 (torch 2.11.0+cu130, cuDNN 91900): ``torch._fused_sdp_choice`` returned
cuDNN for every prefill, decode and training call of the validated models, and the profiles
show cuDNN's kernels (``cudnn_generated_fort_native_sdpa_*``), in
costmodel/validation/results/h200/step_run1.json.
"""

from __future__ import annotations

import re


def compute_capability(spec) -> tuple[int, int] | None:
    """(major, minor) from the spec's architecture text ('hopper (GH100, sm_90)'), None if absent."""
    m = re.search(r"sm_(\d+)(\d)", getattr(spec, "architecture", "") or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def default_sdpa_backend(spec, dtype: str = "bf16", head_dim: int = 128, mask: bool = False,
                         cudnn_version: int = 91900) -> str:
    """'torch-cudnn' | 'torch-flash' | 'torch-efficient' | 'torch-math' (module docstring)."""
    cc = compute_capability(spec)
    half = dtype in ("bf16", "fp16")
    if (cc and cc[0] in (9, 10) and cc[1] == 0 and cudnn_version >= 90900 and half
            and head_dim % 8 == 0 and head_dim <= 256):
        return "torch-cudnn"
    if cc and cc[0] >= 8 and half and not mask and head_dim <= 256 and head_dim % 8 == 0:
        return "torch-flash"
    if cc and cc[0] >= 5:
        return "torch-efficient"
    return "torch-math"


__all__ = ["compute_capability", "default_sdpa_backend"]
