"""A comparison's seeds in parallel, through joblib: loky processes on this machine (the default), or a
dask.distributed or Ray cluster. One task per seed, so that a seed's initial weights and split are made
once and shared by its runs, as in the sequential loop; results come back to the parent as tasks finish."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import numbers
import os
import warnings

__all__ = ["BACKENDS", "MissingEngine", "check_parallel", "run_seeds"]

BACKENDS = ("loky", "dask", "ray")
_NEEDS = {"dask": ("distributed", "dask.distributed"), "ray": ("ray", "Ray")}


class MissingEngine(ImportError):
    """The engine of `backend` is not installed: one line, naming the extra that installs it."""


def check_parallel(n_jobs, backend: str, scheduler, names=("`n_jobs`", "`backend`", "`scheduler`")) -> None:
    """Raise a ValueError naming the argument (by `names`), or MissingEngine, unless a comparison can run so."""
    jobs, flag, address = names
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or not (n_jobs >= 1 or n_jobs == -1):
        raise ValueError(f"{jobs} must be an integer >= 1, or -1 for every core or worker, got {n_jobs!r}")
    if backend not in BACKENDS:
        raise ValueError(f"{flag} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if scheduler is not None and (backend == "loky" or not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"{address} must be the address of a dask or Ray cluster (a non-empty string, with "
                         f"{flag} dask or ray), got {scheduler!r} with {flag} {backend}")
    if backend in _NEEDS:
        module, engine = _NEEDS[backend]
        if importlib.util.find_spec(module) is None:
            raise MissingEngine(f"{flag} {backend} needs {engine}, which is not installed: "
                                f'pip install "fastai-aum[{backend}]"')


@contextlib.contextmanager
def _engine(backend: str, n_jobs: int, scheduler):
    """joblib's configuration for `backend`, with a dask client or a Ray runtime started for it and stopped after
    (a LocalCluster of `n_jobs` one-thread processes, or Ray on `n_jobs` CPUs, without `scheduler`)."""
    import joblib
    if backend == "loky":
        with joblib.parallel_config(backend="loky", n_jobs=n_jobs):
            yield
    elif backend == "dask":
        from distributed import Client, LocalCluster
        if scheduler is not None:
            client = Client(scheduler)
        else:
            workers = n_jobs if n_jobs > 0 else None
            client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR))
        try:
            with joblib.parallel_config(backend="dask", n_jobs=n_jobs):
                yield
        finally:
            cluster = client.cluster
            client.close()
            if cluster is not None and scheduler is None:
                cluster.close()
    else:
        import ray
        from ray.util.joblib import register_ray
        register_ray()
        started = not ray.is_initialized()
        if started:
            ray.init(address=scheduler, num_cpus=None if scheduler or n_jobs < 1 else n_jobs,
                     include_dashboard=False, log_to_driver=False)
        try:
            with joblib.parallel_config(backend="ray", n_jobs=n_jobs):
                yield
        finally:
            if started:
                ray.shutdown()


# What fastai's import says in every new worker process, which a user cannot act on: the command filters it
# in its own process, and new workers read it from the environment they start with (PYTHONWARNINGS).
_WORKER_WARNINGS = ("ignore:`torch.jit.script` is deprecated:FutureWarning",)


@contextlib.contextmanager
def _quiet_workers():
    """`_WORKER_WARNINGS` in the environment of the worker processes started inside (restored after)."""
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(([before] if before else []) + list(_WORKER_WARNINGS))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before


def run_seeds(tasks: dict, dls, test, threads: int, n_jobs: int, backend: str, scheduler, **fit):
    """Yield `(index, fit_run's result)` for every run of `tasks` ({seed: [(index, rate, name, args, recipe)]}),
    a seed's runs together, as each seed finishes on the workers (in no fixed order)."""
    import joblib
    from .fit import fit_seed
    with _quiet_workers(), _engine(backend, n_jobs, scheduler), warnings.catch_warnings():
        # when the parent stops early (interrupted, or a failed write), the seeds still training are dropped;
        # their finished runs are in the store, and --resume trains the rest
        warnings.filterwarnings("ignore", message=r".*tasks which were still being processed", category=UserWarning)
        parallel = joblib.Parallel(return_as="generator_unordered")
        for done in parallel(joblib.delayed(fit_seed)(seed, runs, dls, test, threads, **fit)
                             for seed, runs in tasks.items()):
            yield from done
