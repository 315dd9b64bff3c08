"""The robustness study: every toy variant over the same held-out seeds, its success rate with
a Wilson interval and its outcome counts (what ``figures/robustness.json`` records)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stn.experiments import toy
from stn.experiments.workers import WorkerSettings, map_runs, split
from stn.tasks.metrics import wilson_interval
from stn.training.record import Trajectory
from stn.util.settings import setting

#: The default variant run to the full cycle budget, reported beside the early-stopped ones.
FULL_BUDGET = f"{toy.DEFAULT_VARIANT}, no early stop"

Study = dict[str, tuple[list[dict[str, object]], list[Trajectory]]]


@dataclass(frozen=True)
class RobustnessSettings(WorkerSettings):
    """The robustness notebook's settings: seeds, the protocol and the claims' bounds."""

    n_seeds: int = setting(ge=1)
    first_seed: int = setting(ge=0)
    max_cycles: int = setting(ge=1)
    target: float | None = setting(gt=0)  # None: no early stop
    min_default_rate: float = setting(ge=0, le=1)
    min_group: int = setting(ge=1)
    population: int = setting(ge=1)  # seeds per compiled population; the numbers depend on it
    output_dir: str = setting()
    checkpoint_dir: str | None = setting()

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.n_seeds))

    def experiments(self) -> dict[str, toy.ToyExperiment]:
        """Every variant under the protocol (the default one by its name), then the default
        variant without the early stop."""
        names = [name for name in toy.VARIANTS if name != "default"]
        runs = {n: toy.variant(n, max_cycles=self.max_cycles, target=self.target) for n in names}
        runs[FULL_BUDGET] = toy.variant("default", max_cycles=self.max_cycles, target=None)
        return runs


def run(settings: RobustnessSettings, progress: bool = True) -> Study:
    """Every experiment of ``settings`` on its seeds, diagnosed: rows and trajectories by name.

    With ``settings.checkpoint_dir`` each variant checkpoints into a folder of its own, so a
    rerun skips the finished runs. Each variant's seeds run in populations of
    ``settings.population`` (see :func:`stn.experiments.toy.study`), and with
    ``settings.workers`` > 1 the variants are dealt to that many workers
    (:mod:`stn.experiments.workers`); no number depends on the workers.

    A task is a whole variant, so each compiles once, and its seeds are split only when there
    are fewer variants than workers. The variants without early stopping, which run every seed
    to the full budget, go first: the longest tasks start first, so the workers finish together."""
    experiments, seeds, workers = settings.experiments(), settings.seeds, settings.pool()
    per_variant = -(-workers.count // len(experiments))  # ceil: enough parts to fill workers
    parts = split(seeds, per_variant, group=settings.population)
    show = progress and workers.count == 1
    order = sorted(experiments, key=lambda name: experiments[name].target is not None)
    args = [
        (experiments[name], part, True, show, _checkpoints(settings, name), 1, settings.population)
        for name in order
        for part in parts
    ]
    done = iter(map_runs(toy.study, args, workers))
    studies = {name: toy.merge_studies(seeds, [next(done) for _ in parts]) for name in order}
    return {name: studies[name] for name in experiments}


def _checkpoints(settings: RobustnessSettings, name: str) -> Path | None:
    return None if settings.checkpoint_dir is None else Path(settings.checkpoint_dir) / name


def outcome_counts(results: Study) -> dict[str, dict[str, int]]:
    """How many runs of each variant ended in each outcome (outcomes that occurred only)."""
    return {
        name: dict(Counter(row["outcome"] for row in rows)) for name, (rows, _) in results.items()
    }


def rates(results: Study) -> dict[str, tuple[float, float, float]]:
    """Each variant's success rate and its Wilson 95% interval: (rate, low, high)."""
    out = {}
    for name, (rows, _) in results.items():
        k, n = sum(bool(row["success"]) for row in rows), len(rows)
        out[name] = (k / n, *wilson_interval(k, n))
    return out


def record(settings: RobustnessSettings, results: Study) -> dict:
    """What ``figures/robustness.json`` records: seeds, then per variant its successes, rate,
    interval and outcome counts."""
    counts, rate = outcome_counts(results), rates(results)
    return {
        "seeds": settings.seeds,
        "default_variant": toy.DEFAULT_VARIANT,
        "variants": {
            name: {
                "successes": sum(bool(row["success"]) for row in rows),
                "runs": len(rows),
                "rate": rate[name][0],
                "wilson_95": list(rate[name][1:]),
                "outcomes": counts[name],
            }
            for name, (rows, _) in results.items()
        },
    }
