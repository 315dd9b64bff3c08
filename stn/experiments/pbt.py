"""Population Based Training (Jaderberg et al., 2017) on Ray Tune: the baseline that, like STN,
finds a *schedule* of hyperparameters rather than fixed values.

``population`` members start at random points and train in rounds of ``interval`` steps, each
round at fixed values. After every round Ray Tune's PBT scheduler ranks the members by their
current validation loss, and each member of the worst quarter takes the whole state (weights,
optimizer slots, random generator) of one of the best quarter and explores from its values:
each one multiplied by 0.8 or 1.2, or with probability 1/4 drawn anew, then clipped to its
bounds. The scheduler runs synchronously (every member finishes a round before any is ranked)
and its random draws are seeded, so its decisions follow from the members' results alone, not
from which worker reports first: the numbers do not depend on how many workers run.

Every round of every member is recorded as a :class:`~stn.experiments.baselines.RunResult`
(steps counted within the round), ordered by round then member, so the method's result is the
best evaluation of any member at any time and its curve counts the steps all members spent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from unittest import mock

import numpy as np
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers import pbt as pbt_scheduler
from ray.tune.search import BasicVariantGenerator

from stn.experiments.baselines import FixedTrainer, RunResult, SearchResult, bounds, random_points
from stn.experiments.workers import Workers, limit_threads, ray_session, threads_per_worker
from stn.method.hyperparameters import HyperparameterSpec
from stn.util.checks import is_positive_int

#: The share of the population that is copied (the best) and that copies (the worst).
QUANTILE = 0.25
#: Ray Tune's explore step: the factors a value is multiplied by, and how often it is redrawn.
PERTURBATION_FACTORS = (0.8, 1.2)
RESAMPLE_PROBABILITY = 0.25
#: Tune's console report: the legacy one, which ``verbose=0`` silences.
QUIET_TUNE = {"RAY_AIR_NEW_OUTPUT": "0"}


class Member(tune.Trainable):
    """One member: a :class:`FixedTrainer` (one per process, built once by ``config["trainer"]``)
    trained ``config["interval"]`` steps per round at ``config["point"]``; its checkpoint is
    the trainer's whole state."""

    def setup(self, config: dict) -> None:
        limit_threads(config["threads"])
        self.reset_config(config)

    def reset_config(self, new_config: dict) -> bool:
        """A fresh member (Tune reuses this actor for another member, or one that restores a
        checkpoint next): the seed's initial state."""
        self.trainer: FixedTrainer = new_config["trainer"]()
        self.trainer.fixed.reset(new_config["seed"])
        return True

    def step(self) -> dict:
        run = self.trainer.train_on(self.config["point"], self.config["interval"])
        return {"valid_loss": float(run.metrics["valid_loss"][-1]), "run": run.to_dict()}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """The trainer's state after this round, stored by Tune as ``checkpoint_<round>``.

        Tune numbers a member's stored checkpoints from a count its driver keeps, and that count
        lags when a member resumes before the driver has registered its last save: the next save
        then overwrites the previous round's, which a member exploiting this one may not have
        restored yet (and would then start a round ahead). A member's state after round r is
        one state however often it is saved, so naming the copy by the round cannot clash."""
        self.trainer.state().write(os.path.join(checkpoint_dir, "state"))
        if self._storage is not None:  # None outside Tune: nothing is copied
            self._storage.current_checkpoint_index = self.iteration - 1  # Tune adds one

    def load_checkpoint(self, checkpoint: str) -> None:
        self.trainer.state().read(os.path.join(checkpoint, "state")).assert_consumed()


class _Members(BasicVariantGenerator):
    """The population's members, generated up front, and a search that stays open until every
    member has finished: Tune caches a paused member's actor for the next member to run only
    while the search is open, and would otherwise start a new process every round."""

    def __init__(self) -> None:
        super().__init__()
        self.open: set[str] = set()  # the members generated and not yet finished

    def next_trial(self) -> Any:
        trial = super().next_trial()
        if trial is not None:
            self.open.add(trial.trial_id)
        return trial

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        super().on_trial_complete(trial_id, result, error)
        self.open.discard(trial_id)

    def is_finished(self) -> bool:
        return super().is_finished() and not self.open


class _Rounds(tune.Callback):
    """Collects every member's rounds in the driver, by (round, member)."""

    def __init__(self) -> None:
        self.runs: dict[tuple[int, int], RunResult] = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        key = (int(result["training_iteration"]), trials.index(trial))
        self.runs[key] = RunResult.from_dict(result["run"])


def _clip(config: dict, limits: Mapping[str, tuple[float, float]]) -> dict:
    point = config["point"]
    config["point"] = {n: float(np.clip(v, *limits[n])) for n, v in point.items()}
    return config


@contextlib.contextmanager
def _log_level(name: str, level: int) -> Iterator[None]:
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)


def check_pbt(population: int, interval: int, rounds: int) -> None:
    """Raise ValueError naming the first setting that is not allowed."""
    if not (is_positive_int(population) and population >= 2):
        raise ValueError(f"population={population!r} must be an integer >= 2")
    for name, value in (("interval", interval), ("rounds", rounds)):
        if not is_positive_int(value):
            raise ValueError(f"{name}={value!r} must be a positive integer")


def scheduler(specs: Sequence[HyperparameterSpec], seed: int) -> PopulationBasedTraining:
    """Ray Tune's synchronous PBT scheduler over ``specs``: a round is one training iteration;
    redrawn values come from a generator seeded by ``seed``, and explored ones are clipped."""
    limits = {s.name: bounds(s) for s in specs}
    rng = np.random.default_rng(seed)
    redraw = {n: functools.partial(rng.uniform, lo, hi) for n, (lo, hi) in limits.items()}
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=1,
        hyperparam_mutations={"point": redraw},
        quantile_fraction=QUANTILE,
        resample_probability=RESAMPLE_PROBABILITY,
        perturbation_factors=PERTURBATION_FACTORS,
        custom_explore_fn=functools.partial(_clip, limits=limits),
        synch=True,
        log_config=False,
    )


@contextlib.contextmanager
def _tune_session(workers: Workers, seed: int) -> Iterator[str]:
    """Ray connected, Tune quiet, the PBT scheduler's draws seeded; yields a scratch folder.

    The scheduler draws from its module's global generator, which the rest of Tune also draws
    from as often as its bookkeeping needs (more with fewer workers): a generator of its own,
    seeded, makes its draws follow from the seed alone."""
    with (
        ray_session(workers),
        tempfile.TemporaryDirectory() as scratch,
        mock.patch.object(pbt_scheduler, "random", random.Random(seed)),
        mock.patch.dict(os.environ, QUIET_TUNE),
        _log_level("ray.tune", logging.ERROR),  # a restored member's log files: not kept
    ):
        yield scratch


def _tuner(
    space: dict, pbt: PopulationBasedTraining, rounds: int, recorded: _Rounds, storage: str
) -> tune.Tuner:
    """The Tune experiment: one member per point, one CPU each, ``rounds`` rounds."""
    config = tune.TuneConfig(
        scheduler=pbt,
        search_alg=_Members(),
        metric="valid_loss",
        mode="min",
        reuse_actors=True,
        trial_dirname_creator=lambda trial: trial.trial_id,
    )
    run = tune.RunConfig(
        name=f"pbt-seed{space['seed']}",
        storage_path=str(storage),
        stop={"training_iteration": rounds},
        callbacks=[recorded],
        verbose=0,
    )
    member = tune.with_resources(Member, {"cpu": 1})
    return tune.Tuner(member, param_space=space, tune_config=config, run_config=run)


def pbt_search(
    trainer: Callable[[], FixedTrainer],
    specs: Sequence[HyperparameterSpec],
    population: int,
    interval: int,
    rounds: int,
    seed: int = 0,
    workers: int | Workers = 1,
    storage_path: str | os.PathLike | None = None,
) -> SearchResult:
    """PBT of ``population`` members for ``rounds`` rounds of ``interval`` steps from ``seed``
    (every member starts from the seed's initialisation at its own random point), on Ray
    (``workers``: a local instance of that many CPUs, or a cluster; see
    :class:`~stn.experiments.workers.Workers`). ``trainer`` builds the trainer of one process
    (a picklable callable; a cached one is built once per process). Tune's experiment state
    goes to ``storage_path`` (a temporary folder if None)."""
    check_pbt(population, interval, rounds)
    workers, recorded = Workers.of(workers), _Rounds()
    space = {
        "point": tune.grid_search(random_points(specs, population, seed)),
        "trainer": trainer,
        "seed": seed,
        "interval": interval,
        "threads": threads_per_worker(workers.count),
    }
    with _tune_session(workers, seed) as scratch:
        tuner = _tuner(space, scheduler(specs, seed), rounds, recorded, storage_path or scratch)
        grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"PBT: {len(grid.errors)} members failed; the first: {grid.errors[0]}")
    runs = [recorded.runs[key] for key in sorted(recorded.runs)]
    if len(runs) != population * rounds:
        raise RuntimeError(f"PBT recorded {len(runs)} rounds, not {population} × {rounds}")
    return SearchResult("pbt", runs)
