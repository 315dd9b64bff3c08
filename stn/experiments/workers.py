"""Independent runs spread over worker processes, on this machine or on a Ray cluster.

:func:`map_runs` calls one function on many argument tuples, in this process or in ``count``
workers, and returns the results in the order of the tuples. :class:`WorkerPool` keeps its
workers for many such calls, so each pays its start (importing TensorFlow, compiling) once.
:class:`Workers` says how many and where:

- ``backend="processes"``: spawned processes of this machine (:mod:`concurrent.futures`);
- ``backend="ray"``: Ray tasks, on a local Ray instance with ``count`` CPUs, or on the cluster
  at ``address`` (``"auto"``, ``"ray://head:10001"``, or the ``RAY_ADDRESS`` variable).

A run's numbers follow from its arguments (its seed) alone, so they depend neither on how many
workers run nor on the backend. Each worker runs TensorFlow on its share of the cores (one
thread each when the workers fill the machine): two runs side by side then do not contend for
the same cores, which changes no number. Processes are spawned, not forked: forking a process
that has loaded TensorFlow can hang.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from stn.util.checks import check_choice, is_positive_int
from stn.util.settings import Settings, setting

R = TypeVar("R")
BACKENDS = ("processes", "ray")


def check_workers(workers: object) -> None:
    """Raise ValueError unless ``workers`` is a positive integer."""
    if not is_positive_int(workers):
        raise ValueError(f"workers={workers!r} is not allowed; it must be an integer >= 1")


@dataclass(frozen=True)
class Workers:
    """How many runs go side by side (``count``) and where (``backend``, and for Ray the
    cluster's ``address``; None starts a local instance unless ``RAY_ADDRESS`` names one)."""

    count: int = 1
    backend: str = "processes"
    address: str | None = None

    def __post_init__(self) -> None:
        check_workers(self.count)
        check_choice("backend", self.backend, BACKENDS)
        if self.address is not None and self.backend != "ray":
            raise ValueError(
                f"ray_address={self.address!r} needs backend='ray', not {self.backend!r}"
            )

    @classmethod
    def of(cls, workers: int | Workers) -> Workers:
        """``workers`` as given, or ``count`` local processes for an integer."""
        return workers if isinstance(workers, Workers) else cls(workers)

    def limit(self, jobs: int) -> Workers:
        """At most ``jobs`` workers (none idle), on the same backend."""
        return Workers(min(self.count, max(1, jobs)), self.backend, self.address)


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(Settings):
    """A study's settings of where its runs go (see :class:`Workers`); no number depends on
    them. A notebook's default is a local Ray instance; ``ray_address`` (or ``RAY_ADDRESS``)
    sends the same runs to a cluster."""

    workers: int = setting(1, ge=1)  # runs side by side: processes, or CPUs of local Ray
    backend: str = setting("processes", choices=BACKENDS)
    ray_address: str | None = setting(None)  # None: local Ray, unless RAY_ADDRESS names one

    def pool(self) -> Workers:
        return Workers(self.workers, self.backend, self.ray_address)


def threads_per_worker(count: int) -> int:
    """Each of ``count`` workers' share of this machine's cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // count)


_THREADS: list[int] = []  # the threads this process was set to use, once set


def limit_threads(threads: int) -> None:
    """Run this process's TensorFlow on ``threads`` threads (before its first operation; a
    second call does nothing). Thread counts change no number of the project's runs."""
    if _THREADS:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    _THREADS.append(threads)


def _in_worker(run: Callable[..., R], threads: int, arguments: tuple) -> R:
    limit_threads(threads)
    return run(*arguments)


class WorkerPool:
    """Calls run in this process (one worker) or in workers that live as long as the pool (a
    context manager): spawned processes, or Ray tasks (see :class:`Workers`)."""

    def __init__(self, workers: int | Workers = 1):
        self.workers = Workers.of(workers)
        self._executor: ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._started_ray = False

    def __enter__(self) -> WorkerPool:
        count, threads = self.workers.count, threads_per_worker(self.workers.count)
        if self.workers.backend == "ray" and (count > 1 or self.workers.address is not None):
            self._ray, self._started_ray = start_ray(self.workers)
        elif count > 1:
            spawn = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                count, mp_context=spawn, initializer=limit_threads, initargs=(threads,)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None
        if self._started_ray:
            self._ray.shutdown()
        self._ray, self._started_ray = None, False

    def imap(self, run: Callable[..., R], arguments: Sequence[tuple]) -> Iterator[R]:
        """``run(*a)`` for each ``a``, yielded in the order of ``arguments`` as they finish.

        ``run`` must be a module-level function and its arguments and result picklable."""
        if self._ray is not None and arguments:
            return self._ray_map(run, arguments)
        if self._executor is None or len(arguments) <= 1:
            return (run(*a) for a in arguments)
        return self._executor.map(run, *zip(*arguments, strict=True))

    def _ray_map(self, run: Callable[..., R], arguments: Sequence[tuple]) -> Iterator[R]:
        ray, threads = self._ray, threads_per_worker(self.workers.count)
        task = ray.remote(num_cpus=1)(_in_worker)
        refs = [task.remote(run, threads, a) for a in arguments]  # all submitted at once
        return (ray.get(ref) for ref in refs)


@contextlib.contextmanager
def ray_session(workers: Workers) -> Iterator[Any]:
    """The ``ray`` module, connected as :func:`start_ray` connects it, and shut down on exit if
    this call started it."""
    ray, started = start_ray(workers)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def start_ray(workers: Workers) -> tuple[Any, bool]:
    """Connect to ``workers``' Ray cluster, starting a local instance of ``workers.count``
    CPUs when no address is given or set; (the ``ray`` module, whether this call started it).

    A Ray already initialised in this process is used as it is."""
    try:
        import ray
    except ImportError as error:  # an optional dependency (the experiments extra)
        raise ImportError("backend='ray' needs Ray: pip install 'ray[tune]'") from error
    if ray.is_initialized():
        return ray, False
    address = workers.address or os.environ.get("RAY_ADDRESS")
    local = {} if address else {"num_cpus": workers.count, "include_dashboard": False}
    ray.init(address=address, log_to_driver=False, configure_logging=False, **local)
    return ray, True


def map_runs(
    run: Callable[..., R], arguments: Sequence[tuple], workers: int | Workers = 1
) -> list[R]:
    """``[run(*a) for a in arguments]``, over ``workers`` when more than one (see
    :meth:`WorkerPool.imap`)."""
    with WorkerPool(Workers.of(workers).limit(len(arguments))) as pool:
        return list(pool.imap(run, arguments))


def split(items: Sequence, parts: int, group: int = 1) -> list[list]:
    """``items`` dealt into at most ``parts`` non-empty lists, round robin (balanced costs
    when costs vary smoothly along ``items``), in whole groups of ``group`` consecutive items
    (the last may be short): a list is its groups joined, so it cuts into the same groups."""
    check_workers(parts)
    if not is_positive_int(group):
        raise ValueError(f"group={group!r} must be a positive integer")
    groups = [list(items[i : i + group]) for i in range(0, len(items), group)]
    return [sum(groups[i::parts], []) for i in range(min(parts, len(groups)))]
