"""An nccl-tests-style sweep through torch.distributed: collective times from 8 B to 4 GiB, one process per GPU.

Each point follows nccl-tests (NVIDIA/nccl-tests, doc/PERFORMANCE.md and src/common.cu): out-of-place,
``warmup`` untimed iterations then ``iters`` timed back to back, the mean time of one; ``nbytes`` is
nccl-tests' S (all-reduce: the buffer; all-gather / reduce-scatter: the whole array, n x the per-rank
chunk; all-to-all: one rank's send buffer; send/recv: the message, each rank sending to rank + 1 and
receiving from rank - 1 at once, as sendrecv_perf does), float32 elements. algbw = S/t and busbw =
algbw x factor (costmodel.parallel.collectives.bus_factor).

The GPU side is this thin runner (``run_rank``, ``main``); the grid, the records and everything done with
them are plain functions tested on a CPU (tests/test_collective_sweep.py runs the runner itself on the
gloo backend with two CPU processes). The environment is left as it is found: NCCL_NVLS_ENABLE and the
other NCCL variables the machine sets are recorded, never changed.

    python3 -m costmodel.parallel.collective_sweep --out results.json [--max-bytes 4294967296] [--budget-s 300]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time

from costmodel.parallel.collectives import bus_factor

SWEEP_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ELEMENT_BYTES = 4  # float32, nccl-tests' default type


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for MASTER_PORT: fixed ports collide with other jobs."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sizes(min_bytes: int = 8, max_bytes: int = 4 << 30, factor: int = 2) -> list[int]:
    """nccl-tests' -b/-e/-f grid: min_bytes, x factor, ..., up to max_bytes."""
    if min_bytes < 1 or max_bytes < min_bytes or factor < 2:
        raise ValueError(f"sizes: need 1 <= min_bytes <= max_bytes and factor >= 2, got {min_bytes}, {max_bytes}, {factor}")
    out, s = [], min_bytes
    while s <= max_bytes:
        out.append(s)
        s *= factor
    return out


def elements(collective: str, nbytes: int, world: int) -> int | None:
    """float32 elements of the per-rank buffer torch is given, or None when S is too small for n ranks."""
    count = nbytes // ELEMENT_BYTES
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        per_rank = count // world
        return per_rank * world if per_rank >= 1 else None
    return count if count >= 1 else None


def record(collective: str, world: int, nbytes: int, time_s: float) -> dict:
    algbw = nbytes / time_s
    return {"collective": collective, "n": world, "nbytes": nbytes, "time_s": time_s, "algbw_Bps": algbw,
            "busbw_Bps": algbw * float(bus_factor(collective, world))}


def _op(collective, dist, send, recv, rank, world):
    if collective == "all_reduce":
        recv.copy_(send)
        return dist.all_reduce(recv)
    if collective == "all_gather":
        return dist.all_gather_into_tensor(recv, send)
    if collective == "reduce_scatter":
        return dist.reduce_scatter_tensor(recv, send)
    if collective == "all_to_all":
        return dist.all_to_all_single(recv, send)
    ops = [dist.P2POp(dist.isend, send, (rank + 1) % world), dist.P2POp(dist.irecv, recv, (rank - 1) % world)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()


def run_rank(rank: int, world: int, collectives, byte_sizes, *, warmup: int = 5, iters: int = 20,
             budget_s: float = 300.0, device: str = "cuda") -> list[dict]:
    """Time every (collective, size) on this rank's initialized process group; rank 0's records returned.

    Stops at the first size past ``budget_s`` (all ranks agree through a broadcast flag) and returns
    what it has.
    """
    import torch
    import torch.distributed as dist

    dev = torch.device(device, rank % max(torch.cuda.device_count(), 1)) if device == "cuda" else torch.device("cpu")
    start = time.perf_counter()
    out = []
    for coll in collectives:
        for S in byte_sizes:
            count = elements(coll, S, world)
            if count is None:
                continue
            stop = torch.tensor([1 if time.perf_counter() - start > budget_s else 0], device=dev)
            dist.broadcast(stop, 0)
            if stop.item():
                return out
            if coll == "all_gather":
                send, recv = torch.ones(count // world, device=dev), torch.empty(count, device=dev)
            elif coll == "reduce_scatter":
                send, recv = torch.ones(count, device=dev), torch.empty(count // world, device=dev)
            else:
                send, recv = torch.ones(count, device=dev), torch.empty(count, device=dev)
            for _ in range(warmup):
                _op(coll, dist, send, recv, rank, world)
            sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
            sync()
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(iters):
                _op(coll, dist, send, recv, rank, world)
            sync()
            t = (time.perf_counter() - t0) / iters
            worst = torch.tensor([t], device=dev, dtype=torch.float64)
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)  # the slowest rank's time, as nccl-tests reports
            out.append(record(coll, world, count * ELEMENT_BYTES, float(worst.item())))
    return out


def environment() -> dict:
    """What the results need to be re-predicted: versions, GPUs, topology, NCCL variables, date."""
    info = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "nccl_env": {k: v for k, v in os.environ.items() if k.startswith("NCCL_")}}
    try:
        import torch

        info.update(torch=torch.__version__, cuda=torch.version.cuda,
                    nccl=".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None,
                    gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        info["torch_error"] = repr(exc)
    for key, cmd in (("topology", ["nvidia-smi", "topo", "-m"]),
                     ("driver", ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info[key] = f"unavailable: {exc}"
    return info


def _worker(rank, world, args, backend, device, port, queue):
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        recs = run_rank(rank, world, args["collectives"], args["sizes"], warmup=args["warmup"], iters=args["iters"],
                        budget_s=args["budget_s"], device=device)
        if rank == 0:
            queue.put(recs)
    finally:
        dist.destroy_process_group()


def sweep(world: int, collectives=SWEEP_COLLECTIVES, byte_sizes=None, *, backend: str = "nccl", device: str = "cuda",
          warmup: int = 5, iters: int = 20, budget_s: float = 300.0, port: int | None = None) -> list[dict]:
    """Spawn ``world`` processes (one per GPU), run the sweep, return rank 0's records."""
    import torch.multiprocessing as mp

    args = {"collectives": list(collectives), "sizes": list(byte_sizes or sizes()), "warmup": warmup, "iters": iters,
            "budget_s": budget_s}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = port or free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, args, backend, device, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    recs = queue.get(timeout=budget_s + 600)
    for p in procs:
        p.join()
    return recs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpus", type=int, help="processes (default: every visible GPU)")
    ap.add_argument("--min-bytes", type=int, default=8)
    ap.add_argument("--max-bytes", type=int, default=4 << 30)
    ap.add_argument("--collectives", nargs="+", default=list(SWEEP_COLLECTIVES))
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--backend", default="nccl")
    args = ap.parse_args(argv)
    import torch

    device = "cuda" if args.backend == "nccl" else "cpu"
    world = args.gpus or torch.cuda.device_count()
    if world < 2:
        raise SystemExit("collective_sweep: needs >= 2 GPUs (or --backend gloo --gpus N on a CPU)")
    recs = sweep(world, args.collectives, sizes(args.min_bytes, args.max_bytes), backend=args.backend, device=device,
                 warmup=args.warmup, iters=args.iters, budget_s=args.budget_s)
    with open(args.out, "w") as f:
        given = sys.argv[1:] if argv is None else list(argv)
        json.dump({"command": " ".join(["python3 -m costmodel.parallel.collective_sweep"] + given),
                   "world": world, "backend": args.backend, "environment": environment(), "records": recs}, f, indent=1)
    print(f"wrote {len(recs)} points to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["SWEEP_COLLECTIVES", "elements", "environment", "free_port", "record", "run_rank", "sizes", "sweep"]
