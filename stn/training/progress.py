"""Progress bars: tqdm's auto bar (a widget in Jupyter, text in a terminal) on long loops.

tqdm is in the extra ``experiments``, not a core dependency: it is imported only when a bar is
made, and :class:`ProgressBar` makes none when bars are off, so a quiet run needs no tqdm.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from stn.training.record import RunState

if TYPE_CHECKING:
    from tqdm.auto import tqdm


def progress_enabled(progress: bool) -> bool:
    """``progress``, unless the environment sets ``TQDM_DISABLE`` (the notebook runner does:
    a bar would write elapsed times into the executed notebooks)."""
    return progress and os.environ.get("TQDM_DISABLE", "").lower() not in {"1", "true", "yes"}


def progress_bar(iterable: Iterable | None = None, progress: bool = True, **kwargs) -> tqdm:
    """A tqdm.auto bar over ``iterable``, shown when :func:`progress_enabled` says so."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_enabled(progress), **kwargs)


class ProgressBar:
    """A callback of ``Trainer.run``: a bar over the cycles, with the latest hyperparameter
    values and metrics beside it."""

    def __init__(self, progress: bool, names: Sequence[str], metric_names: Sequence[str]):
        self.progress, self.names, self.metric_names = progress, names, metric_names
        self.bar: tqdm | None = None

    def start(self, trainer: object, state: RunState) -> None:
        if not progress_enabled(self.progress):
            return  # no bar (a disabled tqdm bar would show nothing either)
        initial, total = min(state.done, state.total), state.total
        self.bar = progress_bar(None, self.progress, total=total, initial=initial, unit="cycle")

    def chunk(self, trainer: object, state: RunState, part: dict[str, np.ndarray]) -> None:
        if self.bar is None:
            return
        last = {n: part["values"][-1, j] for j, n in enumerate(self.names) if part["done"]}
        if len(part["metrics"]) and self.metric_names:
            last.update(zip(self.metric_names, part["metrics"][-1], strict=True))
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()}, refresh=False)
        self.bar.update(part["done"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
