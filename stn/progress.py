"""Progress bars: tqdm's auto bar (a widget in Jupyter, text in a terminal) on long loops."""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress_enabled(progress: bool) -> bool:
    """``progress``, unless the environment sets ``TQDM_DISABLE`` (the notebook runner does:
    a bar would write elapsed times into the executed notebooks)."""
    return progress and os.environ.get("TQDM_DISABLE", "").lower() not in {"1", "true", "yes"}


def progress_bar(iterable: Iterable | None = None, progress: bool = True, **kwargs) -> tqdm:
    """A tqdm.auto bar over ``iterable``, shown when :func:`progress_enabled` says so."""
    return tqdm(iterable, disable=not progress_enabled(progress), **kwargs)
