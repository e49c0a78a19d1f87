"""What a simulation returns: per-kernel counts and times, and their totals (values, no printing)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from simulators.tabular import Tabular


@dataclass
class KernelCount:
    """A kernel's work before timing: the simulator paths fill these."""

    name: str
    grid: tuple[int, ...]
    schedule: str  # grid order and loop, in words
    matmul_flops: float
    other_flops: float
    exp_ops: float
    global_read_bytes: int
    global_write_bytes: int
    hbm_read_bytes: int
    hbm_write_bytes: int
    smem_bytes: float
    smem_per_block_bytes: int
    threads_per_block: int
    blocks_per_sm: int
    # for the timing terms (timing.py); the defaults keep the plain roofline of our kernels
    instruction: str = ""  # tensor-core instruction family of the main loop: mma.sync | wgmma | simt | ""
    inflight_bytes_per_block: float = 0.0  # global-load bytes a block keeps in flight (Little's law)
    launches: int = 1  # kernels this entry stands for (graph steps launched as several torch kernels)
    pad_rows: float = 1.0  # computed tile rows over useful rows (a 64-row tile holding one decode row: 64)
    imbalance: float = 1.0  # busiest slot's work over the equal-blocks wave's, blocks of unequal work (causal)

    @property
    def blocks(self) -> int:
        n = 1
        for g in self.grid:
            n *= g
        return n


class KernelResult(Tabular, BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    grid: tuple[int, ...]
    schedule: str
    blocks: int
    threads_per_block: int
    smem_per_block_bytes: int
    blocks_per_sm: int
    slots: int  # SMs x blocks per SM
    waves: int  # ceil(blocks / slots): lock-step waves of the L2 model (l2.py)
    blocks_on_busiest_sm: int  # ceil(blocks / SMs): blocks the busiest SM runs over the kernel
    flops: float
    matmul_flops: float
    other_flops: float
    exp_ops: float
    global_bytes: int
    global_read_bytes: int
    global_write_bytes: int
    hbm_bytes: int
    hbm_read_bytes: int
    hbm_write_bytes: int
    l2_bytes: int
    smem_bytes: float
    roofline_time_s: float  # max over resources, every one at the whole GPU's rate
    per_sm_factor: float  # ceil(blocks / SMs) x SMs / blocks: scales per-SM resources' times (timing.py)
    launch_s: float
    time_s: float
    bound: str
    times_s: dict[str, float]  # per resource, per-SM ones scaled by per_sm_factor; time_s = max + launch_s
    fixed_s: float = 0.0  # GPU-side fixed cost per launch (ramp-up and drain), inside time_s
    masked_s: float = 0.0  # a softmax's extra time on the -inf entries of its input, inside time_s (ops.masked_softmax)


class AttentionResult(Tabular, BaseModel):
    model_config = ConfigDict(frozen=True)

    gpu: str
    impl: str
    pass_: str
    path: str
    config: dict
    schedule: dict
    assumptions: dict[str, str]
    flops: float
    matmul_flops: float
    other_flops: float
    exp_ops: float
    global_bytes: int
    hbm_bytes: int
    l2_bytes: int
    smem_bytes: float
    time_s: float
    bound: str
    kernels: list[KernelResult]
    extra: dict = {}
    call_overhead_s: float = 0.0  # host cost of the call beyond its launches (fitted per implementation), in time_s

    @property
    def gpu_time_s(self) -> float:
        """The kernels' times less their launch cost (and less the call's host overhead): what a
        GPU-side timer (Nsight Compute's kernel durations, events behind a sleeping kernel) sees."""
        return sum(k.time_s - k.launch_s for k in self.kernels)

    def kernel(self, name: str) -> KernelResult:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(f"no kernel {name!r}; kernels: {', '.join(k.name for k in self.kernels)}")

    def to_json(self) -> dict:
        """The JSON-able dict the command prints: totals, kernels, config and assumptions."""
        data = self.model_dump(mode="json")
        data["pass"] = data.pop("pass_")
        return data


def totals(kernels: list[KernelResult]) -> dict:
    """Sums over kernels; the bound is the resource that binds the most summed time."""
    by_bound: dict[str, float] = defaultdict(float)
    for k in kernels:
        by_bound[k.bound] += k.time_s
    out = {key: sum(getattr(k, key) for k in kernels)
           for key in ("flops", "matmul_flops", "other_flops", "exp_ops", "global_bytes", "hbm_bytes", "l2_bytes",
                       "smem_bytes", "time_s")}
    out["bound"] = max(by_bound, key=by_bound.get) if by_bound else "none"
    return out
