"""What a run records: the trajectory of every cycle, and the error a diverged run raises.

The compiled loop returns one dictionary of arrays per chunk; :func:`trim` cuts it to the cycles
that ran and :func:`merge` joins chunks, and :class:`Trajectory` is the finished record.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stn.method.stn import STNConfig
from stn.util.io import write_atomic

#: How often each recorded array gets a row: every cycle, or every ``STNConfig.<field>`` cycles.
RECORD_EVERY = {
    "values": None,
    "stddev": None,
    "weight_loss": None,
    "hyper_loss": None,
    "metrics": "eval_every",
    "snapshots": "snapshot_every",
}
RECORD_KEYS = tuple(RECORD_EVERY)


#: The array fields of a Trajectory besides ``metrics``.
TRAJECTORY_ARRAYS = (
    "values", "stddev", "weight_loss", "hyper_loss", "eval_cycles", "snapshots", "snapshot_cycles",
)  # fmt: skip


@dataclass
class Trajectory:
    """What one STN run recorded, as NumPy arrays (one row per cycle unless stated)."""

    names: tuple[str, ...]
    values: np.ndarray  # constrained hyperparameters [cycles, H]
    stddev: np.ndarray  # perturbation scale softplus(s) [cycles, H]
    weight_loss: np.ndarray  # last training loss of each cycle
    hyper_loss: np.ndarray  # last validation objective of each cycle
    metrics: dict[str, np.ndarray]  # one row per evaluation
    eval_cycles: np.ndarray  # the cycle (1-based) of each evaluation
    snapshots: np.ndarray  # one row per snapshot
    snapshot_cycles: np.ndarray
    seconds: float = 0.0
    stopped: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return len(self.weight_loss)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the trajectory to ``path`` as a NumPy ``.npz`` archive, atomically."""
        arrays = {f"metrics/{k}": v for k, v in self.metrics.items()}
        arrays.update({key: getattr(self, key) for key in TRAJECTORY_ARRAYS})
        info = {"names": self.names, "seconds": self.seconds, "stopped": self.stopped}
        arrays["info"] = np.array(json.dumps({**info, "extra": self.extra}, default=repr))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return write_atomic(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trajectory:
        """Read a trajectory written by :meth:`save`."""
        with np.load(path) as data:
            info = json.loads(str(data["info"]))
            metrics = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("metrics/")}
            arrays = {k: data[k] for k in data.files if k != "info" and "/" not in k}
        return cls(
            names=tuple(info["names"]),
            metrics=metrics,
            seconds=info["seconds"],
            stopped=info["stopped"],
            extra=info["extra"],
            **arrays,
        )

    def final(self) -> dict[str, float]:
        """The last recorded hyperparameter values and metrics."""
        out = {n: float(self.values[-1, i]) for i, n in enumerate(self.names)}
        out.update({k: float(v[-1]) for k, v in self.metrics.items()})
        return out


class DivergenceError(FloatingPointError):
    """A run produced a NaN or an infinity; nothing from it should be plotted or saved.

    ``quantities`` maps each quantity that was not finite at ``cycle`` to its value.
    """

    def __init__(self, cycle: int, quantities: dict[str, float], unit: str = "cycle"):
        self.cycle, self.quantities = cycle, dict(quantities)
        listed = ", ".join(f"{name} is {value}" for name, value in self.quantities.items())
        super().__init__(
            f"training diverged at {unit} {cycle}: {listed}. The run was stopped and nothing "
            "was recorded from it (lower the learning rates or check the inputs)"
        )


def trim(out: dict[str, np.ndarray], cfg: STNConfig) -> dict[str, np.ndarray]:
    """A chunk's output cut to the cycles it ran."""
    done = int(out["done"])
    trimmed = {"done": done, "stop": bool(out["stop"])}
    if "member_done" in out:  # a population's: each member's cycles
        trimmed["member_done"] = np.asarray(out["member_done"])
    for key, every in RECORD_EVERY.items():
        trimmed[key] = out[key][: done // getattr(cfg, every) if every else done]
    return trimmed


def merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Trimmed chunk outputs (or an earlier merge) joined into one run so far."""
    if len(parts) == 1:
        return parts[0]
    merged = {"done": sum(p["done"] for p in parts), "stop": parts[-1]["stop"]}
    if "member_done" in parts[0]:
        merged["member_done"] = sum(p["member_done"] for p in parts)
    merged.update({key: np.concatenate([p[key] for p in parts]) for key in RECORD_EVERY})
    return merged


@dataclass
class RunState:
    """A run in progress: the chunk outputs so far (trimmed), the cycles done, whether it
    stopped at the target, and the seconds spent before this call (a resumed run's)."""

    total: int
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    done: int = 0
    stopped: bool = False
    seconds_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def merged(self) -> dict[str, np.ndarray]:
        """The run so far as one trimmed chunk output (and keep it merged)."""
        self.parts = [merge(self.parts)]
        return self.parts[0]
