"""Whole-or-nothing output: every file is written to a temporary sibling, then renamed."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stn.util.environment import record


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_json(path: str | os.PathLike, data: object) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True)))


def write_results_json(path: str | os.PathLike, data: dict) -> Path:
    """Write a results file: ``data`` as JSON, stamped with the environment that computed it
    (``stn.util.environment.record``) under the key ``environment``."""
    return write_json(path, {**data, "environment": record()})


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a CI timeout) into SystemExit, so ``finally`` blocks run and
    :func:`atomic_path` removes its temporary file; Python's default would skip them."""

    def terminate(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
