"""Independent runs spread over worker processes.

:func:`map_runs` calls one function on many argument tuples, in this process or in ``workers``
spawned processes, and returns the results in the order of the tuples. :class:`WorkerPool` keeps
its processes for many such calls, so each pays its start (importing TensorFlow, compiling) once.
A run's numbers follow from its arguments (its seed) alone, so they do not depend on how many
workers run. Workers are spawned, not forked: forking a process that has loaded TensorFlow can
hang.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from stn.util.checks import is_positive_int

R = TypeVar("R")


def check_workers(workers: object) -> None:
    """Raise ValueError unless ``workers`` is a positive integer."""
    if not is_positive_int(workers):
        raise ValueError(f"workers={workers!r} is not allowed; it must be an integer >= 1")


class WorkerPool:
    """Calls run in this process (``workers=1``) or in ``workers`` spawned processes that live
    as long as the pool (a context manager)."""

    def __init__(self, workers: int = 1):
        check_workers(workers)
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            spawn = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=spawn)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None

    def imap(self, run: Callable[..., R], arguments: Sequence[tuple]) -> Iterator[R]:
        """``run(*a)`` for each ``a``, yielded in the order of ``arguments`` as they finish.

        ``run`` must be a module-level function and its arguments and result picklable."""
        if self._executor is None or len(arguments) <= 1:
            return (run(*a) for a in arguments)
        return self._executor.map(run, *zip(*arguments, strict=True))


def map_runs(run: Callable[..., R], arguments: Sequence[tuple], workers: int = 1) -> list[R]:
    """``[run(*a) for a in arguments]``, over ``workers`` processes when more than one (see
    :meth:`WorkerPool.imap`)."""
    check_workers(workers)
    with WorkerPool(min(workers, max(1, len(arguments)))) as pool:
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
