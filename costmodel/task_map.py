"""Where the searches run their work units: in this process, a local process pool, or on Ray.

One function, used by the parallel-layout search (``costmodel.parallel.search``) and the serving
search (``costmodel.serving.search``): ``fn`` is a top-level function (a process pool or Ray ships
it by reference) and every task a picklable argument tuple; results come back in task order.
``ray_address``: ``"local"`` starts a Ray instance here with ``workers`` CPUs, any other address
(``"auto"``, ``"ray://host:10001"``) joins a running cluster; an instance already initialised in
this process is used as it is. Ray is the optional extra ``ray``.
"""

from __future__ import annotations


def map_tasks(fn, tasks, *, workers: int = 1, ray_address: str | None = None) -> list:
    tasks = list(tasks)
    if ray_address:
        try:
            import ray
        except ImportError:
            raise ValueError("ray: --ray needs the optional extra 'ray' (pip install 'ioaware[ray]')") from None
        started = not ray.is_initialized()
        if started:
            if ray_address == "local":
                ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=ray_address, log_to_driver=False)
        try:
            remote = ray.remote(fn)
            return ray.get([remote.remote(*t) for t in tasks])
        finally:
            if started:
                ray.shutdown()
    if workers > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, *zip(*tasks)))
    return [fn(*t) for t in tasks]


__all__ = ["map_tasks"]
