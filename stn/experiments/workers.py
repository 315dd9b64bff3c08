"""Independent runs spread over worker processes.

:func:`map_runs` calls one function on many argument tuples, in this process or in ``workers``
spawned processes, and returns the results in the order of the tuples. A run's numbers follow
from its arguments (its seed) alone, so they do not depend on how many workers run. Workers are
spawned, not forked: forking a process that has loaded TensorFlow can hang.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from stn.util.checks import is_positive_int

R = TypeVar("R")


def check_workers(workers: object) -> None:
    """Raise ValueError unless ``workers`` is a positive integer."""
    if not is_positive_int(workers):
        raise ValueError(f"workers={workers!r} is not allowed; it must be an integer >= 1")


def map_runs(run: Callable[..., R], arguments: Sequence[tuple], workers: int = 1) -> list[R]:
    """``[run(*a) for a in arguments]``, over ``workers`` processes when more than one.

    ``run`` must be a module-level function and its arguments and result picklable."""
    check_workers(workers)
    if workers == 1 or len(arguments) <= 1:
        return [run(*a) for a in arguments]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(arguments)), mp_context=spawn) as pool:
        return list(pool.map(run, *zip(*arguments, strict=True)))


def split(items: Sequence, parts: int) -> list[list]:
    """``items`` dealt into at most ``parts`` non-empty lists, round robin (balanced costs
    when costs vary smoothly along ``items``)."""
    check_workers(parts)
    return [list(items[i::parts]) for i in range(min(parts, len(items)))]
