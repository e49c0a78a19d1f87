"""The device at hand: its name and versions, the bundled spec it maps to, and torch where usable.

``time_torch`` is the CUDA-event timer of torch calls (cuBLAS matmuls, torch's copy,
SDPA); numba launches are timed by ``kernels.timing``.
"""
from __future__ import annotations

import subprocess

from numba import cuda

from kernels._cuda import SIMULATOR


def torch_cuda():
    """The torch module where it imports and sees a CUDA device, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def time_torch(run, repeats: int, warmup: int) -> list[float]:
    """Seconds per call of ``run()`` (torch work on the current stream), each bracketed by
    two torch CUDA events, after ``warmup`` calls and a synchronize."""
    import torch

    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) * 1e-3)
    return samples


def default_base(gpu_name: str) -> str:
    """The bundled datasheet spec for a device name ("NVIDIA H100 80GB HBM3" -> h100-sxm5-80gb),
    from each spec's ``device_names`` (``hardware_specs.device_names``)."""
    from hardware_specs.device_names import spec_for_device

    try:
        return spec_for_device(gpu_name)
    except ValueError as exc:
        raise ValueError(f"--base: {exc}; pass --base NAME") from None


def device_info() -> dict:
    """Name, driver and runtime versions, library versions of the current device and process."""
    import numba
    import numpy

    info: dict = {"numba": numba.__version__, "numpy": numpy.__version__}
    try:
        import numba_cuda
        info["numba_cuda"] = numba_cuda.__version__
    except ImportError:
        info["numba_cuda"] = "not installed"
    torch = torch_cuda()
    try:
        import torch as _t
        info["torch"] = _t.__version__
    except ImportError:
        info["torch"] = None
    if SIMULATOR:
        info.update(gpu="CUDA simulator", driver="simulator", cuda_runtime="simulator", sm_count=1)
        return info
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    info["gpu"] = name
    info["sm_count"] = int(dev.MULTIPROCESSOR_COUNT)
    info["clock_Hz"] = float(dev.CLOCK_RATE) * 1e3
    info["compute_capability"] = ".".join(str(x) for x in dev.compute_capability)
    try:
        from numba.cuda.cudadrv.driver import driver
        api = driver.get_version()
        info["driver_api"] = f"{api[0]}.{api[1]}"
    except Exception:  # noqa: BLE001 - versions are best effort
        info["driver_api"] = "unknown"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        info["driver"] = smi.stdout.strip().splitlines()[0] + f" (CUDA driver API {info['driver_api']})"
    except Exception:  # noqa: BLE001
        info["driver"] = f"CUDA driver API {info['driver_api']}"
    try:
        rt = cuda.runtime.get_version()
        info["cuda_runtime"] = f"{rt[0]}.{rt[1]}"
    except Exception:  # noqa: BLE001
        info["cuda_runtime"] = "unknown"
    if torch is not None:
        info["torch_cuda"] = torch.version.cuda
    return info
