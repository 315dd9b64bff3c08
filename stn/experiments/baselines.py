"""Standard hyperparameter search, the methods STN is compared against.

The same architectures without hyper weights (``hyper=False``) are trained at fixed
hyperparameters in STN's compiled, seeded loop; grid search, random search and Optuna's TPE
sampler choose those hyperparameters. Every trial gets the same budget of training steps, and the
wall time of each trial is recorded. The Optuna study lives in a storage URL (a SQLite file by
default, any RDB URL such as PostgreSQL to spread trials over machines) and resumes; grid,
random and halving searches record their trials in the same storage and resume too.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import optuna
import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE, HyperparameterSpec
from stn.method.models import HyperModel
from stn.method.optimizers import make_optimizer
from stn.method.population import MemberMask
from stn.method.stn import (
    STNConfig,
    check_dtype,
    init_seed,
    optimizer_state,
    restart,
    stream,
    train_seed,
)
from stn.method.variants import HYPERNET_INPUTS
from stn.tasks.classification import ClassificationTask
from stn.training.loop import Trainer, compiled
from stn.training.progress import progress_bar
from stn.training.record import DivergenceError, Trajectory
from stn.util.checks import is_count, is_positive_int

#: A point of hyperparameter values, by name.
Point = Mapping[str, float]

#: No storage: an in-memory study, which writes no file (and cannot resume). Pass a database URL
#: (``sqlite:///build/optuna.db``, ``postgresql://...``) to keep the study and resume it.
DEFAULT_STORAGE = None


@dataclass
class RunResult:
    """One training run at fixed hyperparameters: metrics on the validation and test sets after
    every ``eval_every_steps`` steps (``steps`` holds the step count of each evaluation)."""

    values: dict[str, float]
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    seconds: float

    def best(self) -> dict[str, float]:
        """The metrics at the evaluation with the lowest validation loss (early stopping)."""
        i = int(np.argmin(self.metrics["valid_loss"]))
        return {"step": int(self.steps[i]), **{k: float(v[i]) for k, v in self.metrics.items()}}

    def to_dict(self) -> dict:
        return {
            "values": self.values,
            "steps": self.steps.tolist(),
            "metrics": {k: v.tolist() for k, v in self.metrics.items()},
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> RunResult:
        metrics = {k: np.asarray(v) for k, v in d["metrics"].items()}
        return cls(dict(d["values"]), np.asarray(d["steps"]), metrics, float(d["seconds"]))


class FixedValues(tf.Module):
    """Hyperparameters held at fixed values, unperturbed: the values the task applies, what the
    loop records, and (for a model with hyper weights) the unconstrained λ its network reads.
    A population of ``members`` holds one point per member ([P, H])."""

    def __init__(
        self,
        specs: Sequence[HyperparameterSpec],
        dtype: tf.DType = DEFAULT_DTYPE,
        members: int | None = None,
    ):
        super().__init__(name="fixed_values")
        self.specs, self.dtype, self.members = tuple(specs), dtype, members
        self.names, self.size = tuple(s.name for s in specs), len(specs)
        shape = [self.size] if members is None else [members, self.size]
        zeros = tf.zeros(shape, dtype)
        self.fixed = tf.Variable(zeros, trainable=False, name="values")
        self.unconstrained = tf.Variable(zeros, trainable=False, name="unconstrained")

    def hold(self, values: Point | Sequence[Point], unconstrained: bool) -> None:
        """Hold ``values`` (by name; a population's, one point per member); with
        ``unconstrained``, also λ in the network's space."""
        points = [values] if self.members is None else list(values)
        if len(points) != (self.members or 1):
            raise ValueError(f"values has {len(points)} points for {self.members} members")
        for point in points:
            missing = set(self.names) - set(point)
            if missing:
                raise ValueError(f"values={dict(point)!r} lacks {sorted(missing)}")
        held = [[float(point[n]) for n in self.names] for point in points]
        self.fixed.assign(held[0] if self.members is None else held)
        if unconstrained:
            spaces = [spec.space for spec in self.specs]
            inverse = [[t.inverse(v) for t, v in zip(spaces, row, strict=True)] for row in held]
            self.unconstrained.assign(inverse[0] if self.members is None else inverse)

    def per_example(self, x: tf.Tensor, n: tf.Tensor | int) -> tf.Tensor:
        """A held [H] (or [P, H]) repeated for ``n`` examples: [n, H] (or [P, n, H])."""
        if self.members is None:
            return tf.tile(x[tf.newaxis], [n, 1])
        return tf.tile(x[:, tf.newaxis], [1, n, 1])

    def values(self) -> tf.Tensor:
        return tf.identity(self.fixed)

    def stddev(self) -> tf.Tensor:
        return tf.zeros_like(self.fixed)


class FixedRun(tf.Module):
    """A model trained at fixed hyperparameter values: Algorithm 1's weight step with λ held
    still and unperturbed, and no hyperparameter step. A plain model (no hyper weights) is the
    searches' baseline; a hypernetwork reads the fixed λ as an STN reads it at evaluation, which
    gives STN's capacity without its schedule.

    It has what :class:`~stn.training.loop.Trainer` runs (a cycle is one weight step, the
    validation objective is recorded as 0), so the baselines share STN's compiled loop, and
    :func:`~stn.method.stn.restart` gives them STN's seeding. Of ``config`` it reads the loop's
    settings, the weight optimizer's and the hypernetwork input's.

    With ``members`` it is a population (:mod:`stn.method.population`) of that many trials of
    one seed, each at its own point: member i is the run of point i (to rounding)."""

    def __init__(
        self,
        task: ClassificationTask,
        specs: Sequence[HyperparameterSpec],
        model_fn: Callable[[int, tf.random.Generator], HyperModel],
        config: STNConfig,
        members: int | None = None,
    ):
        super().__init__(name="fixed_run")
        if members is not None and not is_positive_int(members):
            raise ValueError(f"members={members!r} must be a positive integer or None")
        self.task, self.model_fn, self.config = task, model_fn, config
        self.population = members
        self.seed: int | list[int] = self._seeds(0)
        self.mask = None if members is None else MemberMask(members)
        self.hyperparameters = FixedValues(specs, task.dtype, members)
        self.model = model_fn(self.hyperparameters.size, stream(self.seed, init_seed))
        check_dtype(self.model, task)
        self.hypernet_input = HYPERNET_INPUTS[config.hypernet_input]()
        self.generator = stream(self.seed, train_seed)
        self.optimizer = make_optimizer(config.weight_optimizer, config.weight_lr)
        self.optimizer.build(list(self.model.weights))  # no target: no member stops early
        self._optimizer_init = optimizer_state([self.optimizer])

    def _seeds(self, seed: int) -> int | list[int]:
        """The run's seed, or every member's (one seed, shared)."""
        return seed if self.population is None else [seed] * self.population

    def reset(self, seed: int, values: Point | Sequence[Point] | None = None) -> None:
        """Start over from ``seed`` (fresh weights, optimizer state and noise; a population's
        members all from it), at ``values`` if given."""
        if not is_count(seed):
            raise ValueError(f"seed={seed!r} must be an integer >= 0")
        self.seed = self._seeds(seed)
        restart(self, self.hyperparameters.size, self.seed, self._optimizer_init)
        if self.mask is not None:
            self.mask.reset()
        if values is not None:
            self.hold(values)

    def hold(self, values: Point | Sequence[Point]) -> None:
        """Train on at ``values`` (by name; one point per member in a population) from now on."""
        self.hyperparameters.hold(values, unconstrained=bool(self.model.hyper_weights))

    def batch_size(self, batch: tuple[tf.Tensor, ...]) -> tf.Tensor:
        """How many examples ``batch`` has (each member's, in a population)."""
        return tf.shape(batch[0])[0 if self.population is None else 1]

    def network_input(self, n: tf.Tensor | int) -> tf.Tensor | None:
        """What the network reads for ``n`` examples: nothing for a plain model, else the
        fixed λ as the hypernetwork reads the unperturbed λ."""
        if not self.model.hyper_weights:
            return None
        hp = self.hyperparameters
        return self.hypernet_input.exact(hp.per_example(hp.unconstrained, n))

    @tf.autograph.experimental.do_not_convert
    def weight_step(self) -> tf.Tensor:
        """φ ← φ − α ∂f(λ, w_φ(λ))/∂φ at the fixed λ (each member's at its own)."""
        batch = self.task.train_batch(self.generator)
        n = self.batch_size(batch)
        values = self.hyperparameters.per_example(self.hyperparameters.fixed, n)
        with tf.GradientTape() as tape:
            hnet_input = self.network_input(n)
            loss = self.task.train_loss(self.model, batch, hnet_input, values, self.generator)
        variables = list(self.model.weights)
        grads = tape.gradient(loss, variables)  # of the members' sum: each member's own
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    @tf.autograph.experimental.do_not_convert
    def cycle(self) -> tuple[tf.Tensor, tf.Tensor]:
        loss = self.weight_step()
        return loss, tf.zeros_like(loss)

    @tf.autograph.experimental.do_not_convert
    def evaluate(self) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        return self.task.evaluate(self.model, self.network_input)


#: Steps per compiled chunk of a fixed run, rounded down to a multiple of its evaluation interval.
FIXED_CHUNK_STEPS = 1000


class FixedTrainer:
    """Trains a :class:`FixedRun` in STN's compiled loop: one model, one optimizer and one
    compiled chunk serve every trial, re-initialised in place from the trial's seed. With
    ``members``, a population: ``members`` trials at a time in one program."""

    def __init__(
        self,
        task: ClassificationTask,
        specs: Sequence[HyperparameterSpec],
        model_fn: Callable[[int, tf.random.Generator], HyperModel],
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        eval_every_steps: int = 75,
        jit_compile: bool = True,
        hypernet_input: str = "plain",
        members: int | None = None,
    ):
        if not is_positive_int(eval_every_steps):
            raise ValueError(f"eval_every_steps={eval_every_steps!r} must be a positive integer")
        chunk = eval_every_steps * max(1, FIXED_CHUNK_STEPS // eval_every_steps)
        config = STNConfig(
            warmup_steps=0,
            target=None,
            weight_optimizer=optimizer,
            weight_lr=learning_rate,
            hypernet_input=hypernet_input,
            chunk_cycles=chunk,
            eval_every=eval_every_steps,
            snapshot_every=chunk,
            jit_compile=jit_compile,
        )
        self.fixed = FixedRun(task, specs, model_fn, config, members)
        self.trainer = Trainer(self.fixed)
        self.members, self.eval_every_steps = members, eval_every_steps
        self._evaluate = compiled(self.fixed.evaluate, jit_compile=jit_compile)

    def run(
        self, values: Point | Sequence[Point], steps: int, seed: int = 0
    ) -> RunResult | list[RunResult]:
        """Train for ``steps`` steps from ``seed`` at ``values`` (a population: one point per
        member, one result each), evaluating every ``eval_every_steps`` steps and at the end."""
        self.fixed.reset(seed)
        return self.train_on(values, steps)

    def train_on(self, values: Point | Sequence[Point], steps: int) -> RunResult | list[RunResult]:
        """Train ``steps`` more steps from the current state (weights, optimizer and noise) at
        ``values``, evaluating every ``eval_every_steps`` steps of them and at the end."""
        if not is_positive_int(steps):
            raise ValueError(f"steps={steps!r} must be a positive integer")
        self.fixed.hold(values)
        try:
            trajectories = self.trainer.run(max_cycles=steps)
        except DivergenceError as error:  # a cycle of a fixed run is one step
            raise DivergenceError(error.cycle, error.quantities, unit="step") from None
        last = self._last_evaluation(steps)
        if self.members is None:
            return self._result(values, trajectories, steps, last)
        return [
            self._result(point, t, steps, {k: v[j] for k, v in last.items()} if last else None)
            for j, (point, t) in enumerate(zip(values, trajectories, strict=True))
        ]

    def _last_evaluation(self, steps: int) -> dict[str, np.ndarray] | None:
        """The metrics at ``steps`` when the loop did not evaluate there (it evaluates at whole
        intervals only): each a value, or one per member."""
        if steps % self.eval_every_steps == 0:
            return None
        last = {k: v.numpy().astype(np.float64) for k, v in self._evaluate()[0].items()}
        bad = {
            f"metric {k}": float(v[~np.isfinite(v)][0] if v.ndim else v)
            for k, v in last.items()
            if not np.isfinite(v).all()
        }
        if bad:
            raise DivergenceError(steps, bad, unit="step")
        return last

    def _result(
        self, values: Point, trajectory: Trajectory, steps: int, last: dict[str, np.ndarray] | None
    ) -> RunResult:
        """One trial's result; a population's wall time is shared evenly by its members."""
        at, metrics = trajectory.eval_cycles, trajectory.metrics
        if last is not None:
            at = np.append(at, steps)
            metrics = {k: np.append(v, float(last[k])) for k, v in metrics.items()}
        names = self.fixed.hyperparameters.names
        seconds = trajectory.seconds / (self.members or 1)
        return RunResult({n: float(values[n]) for n in names}, at, metrics, seconds)

    def state(self) -> tf.train.Checkpoint:
        """The whole training state (weights, optimizer slots, random generator), to save with
        ``write`` and load with ``read``."""
        fixed = self.fixed
        return tf.train.Checkpoint(
            weights=list(fixed.model.weights),
            optimizer=list(fixed.optimizer.variables),
            generator=fixed.generator,
        )

    def run_trials(
        self, points: Sequence[Mapping[str, float]], steps: int, seed: int
    ) -> Iterator[RunResult]:
        """One run per point, one after another (see :class:`Trials`); a population's trainer
        runs them ``members`` at a time, the last group filled up with copies of its last point
        (whose runs are dropped)."""
        if self.members is None:
            yield from (self.run(point, steps, seed) for point in points)
            return
        for i in range(0, len(points), self.members):
            group = list(points[i : i + self.members])
            filled = group + [group[-1]] * (self.members - len(group))
            yield from self.run(filled, steps, seed)[: len(group)]


class Trials(Protocol):
    """Runs trials: a :class:`FixedTrainer` in this process, or a pool of worker processes
    (:class:`stn.experiments.real_data.TrialPool`). A trial's result follows from its point,
    steps and seed alone, so it does not depend on which runs it."""

    def run_trials(
        self, points: Sequence[Mapping[str, float]], steps: int, seed: int
    ) -> Iterator[RunResult]:
        """The runs of ``points``, in their order, yielded as they finish."""
        ...


@dataclass
class SearchResult:
    """All trials of one search method, in the order they ran."""

    method: str
    runs: list[RunResult]

    @property
    def total_steps(self) -> int:
        return int(sum(r.steps[-1] for r in self.runs))

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.runs))

    def best(self) -> dict[str, float]:
        """The best trial's early-stopped metrics and its hyperparameters."""
        run = min(self.runs, key=lambda r: r.best()["valid_loss"])
        return {**run.best(), **run.values}

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Best validation loss found so far against the training steps spent so far."""
        steps, losses, offset = [], [], 0
        for run in self.runs:
            steps.append(offset + run.steps)
            losses.append(run.metrics["valid_loss"])
            offset += int(run.steps[-1])
        return np.concatenate(steps), np.minimum.accumulate(np.concatenate(losses))


def bounds(spec: HyperparameterSpec) -> tuple[float, float]:
    if spec.lower is None or spec.upper is None:
        raise ValueError(
            f"hyperparameter {spec.name!r} has lower={spec.lower}, upper={spec.upper}; "
            "search needs both bounds"
        )
    return spec.lower, spec.upper


def grid_points(specs: Sequence[HyperparameterSpec], n_trials: int) -> list[dict[str, float]]:
    """A grid a user would write: the dropout rates ``dropout_*`` tied into one axis, every
    other hyperparameter its own axis; ⌊n_trials^(1/axes)⌋ levels (at least 2) per axis, evenly
    spaced over the lower two thirds of the range, starting at the lower bound."""
    _check_trials(n_trials)
    tied = [s for s in specs if s.name.startswith("dropout_")]
    axes = [[s] for s in specs if s not in tied] + ([tied] if tied else [])
    levels = max(2, math.floor(n_trials ** (1 / len(axes)) + 1e-9))
    grids = []
    for axis in axes:
        lo, hi = bounds(axis[0])
        grids.append(lo + (hi - lo) * np.linspace(0.0, 2.0 / 3.0, levels))
    points = []
    for combo in itertools.product(*grids):
        points.append({s.name: float(v) for axis, v in zip(axes, combo, strict=True) for s in axis})
    return points[:n_trials] if len(points) > n_trials else points


def random_points(
    specs: Sequence[HyperparameterSpec], n_trials: int, seed: int = 0
) -> list[dict[str, float]]:
    """``n_trials`` independent uniform draws inside each hyperparameter's bounds."""
    _check_trials(n_trials)
    rng = np.random.default_rng(seed)
    limits = [bounds(s) for s in specs]
    return [
        {s.name: float(rng.uniform(lo, hi)) for s, (lo, hi) in zip(specs, limits, strict=True)}
        for _ in range(n_trials)
    ]


def search(
    trials: Trials,
    points: Sequence[Mapping[str, float]],
    steps: int,
    seed: int = 0,
    method: str = "grid",
    progress: bool = False,
) -> SearchResult:
    """Train one model per point (same seed for all: common initialisation and noise)."""
    runs = []
    bar = progress_bar(trials.run_trials(points, steps, seed), progress, total=len(points))
    with bar:
        bar.set_description(method)
        for run in bar:
            runs.append(run)
            best = min(run.best()["valid_loss"] for run in runs)
            bar.set_postfix(best_valid_loss=f"{best:.4g}")
    return SearchResult(method, runs)


def halving_search(
    trials: Trials,
    specs: Sequence[HyperparameterSpec],
    n_trials: int,
    steps: int,
    seed: int = 0,
    eta: int = 3,
    rungs: int = 3,
    progress: bool = False,
) -> SearchResult:
    """Successive halving (one bracket of Hyperband) at the budget of ``n_trials`` trials of
    ``steps`` steps: random points trained for steps/η^(rungs−1) steps, the best 1/η of them
    (by early-stopped validation loss) trained again for η times as many, and so on up to
    ``steps``. A promoted point retrains from the start (same seed, so its first steps repeat
    exactly) and every step counts, so rungs·n0·steps/η^(rungs−1) = n_trials·steps fixes the
    number of points n0 (81 for 27 trials at η = 3 and 3 rungs)."""
    _check_trials(n_trials)
    for name, value in (("eta", eta), ("rungs", rungs)):
        if not (is_positive_int(value) and value >= 2):
            raise ValueError(f"{name}={value!r} must be an integer >= 2")
    if not is_positive_int(steps) or steps < eta ** (rungs - 1):
        raise ValueError(
            f"steps={steps!r} must be at least eta**(rungs - 1) = {eta ** (rungs - 1)}"
        )
    n_points = max(1, round(n_trials * eta ** (rungs - 1) / rungs))
    points = random_points(specs, n_points, seed)
    runs: list[RunResult] = []
    for rung in range(rungs):
        budget = steps // eta ** (rungs - 1 - rung)
        rung_runs = list(search(trials, points, budget, seed, f"halving {rung}", progress).runs)
        runs += rung_runs
        losses = [run.best()["valid_loss"] for run in rung_runs]
        kept = np.argsort(losses, kind="stable")[: max(1, len(points) // eta)]
        points = [points[i] for i in sorted(kept)]
    return SearchResult("halving", runs)


def load_study(
    study_name: str, storage: str | None, sampler: optuna.samplers.BaseSampler | None = None
) -> optuna.Study:
    """The study ``study_name`` at ``storage`` (any SQLAlchemy URL, or None for memory),
    created or loaded."""
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise ValueError(
            f"storage={storage!r} must be a database URL, e.g. 'sqlite:///optuna.db' or "
            "'postgresql://user:password@host/db'"
        )
    if storage is not None and storage.startswith("sqlite:///"):  # SQLite makes no folder
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )


def open_study(study_name: str, storage: str | None, seed: int, n_trials: int) -> optuna.Study:
    """The TPE study ``study_name`` at ``storage`` (see :func:`load_study`); TPE starts with
    ⌈n_trials/3⌉ random trials (at most 10)."""
    sampler = optuna.samplers.TPESampler(
        n_startup_trials=min(10, math.ceil(n_trials / 3)), seed=seed
    )
    return load_study(study_name, storage, sampler)


class StoredTrials:
    """``trials`` with every finished run added to the Optuna study ``study_name`` at
    ``storage`` (its early-stopped validation loss as the value, the run itself, its point, steps
    and seed as attributes). Run again, a point already run with the same steps and seed is read
    back instead of trained, so an interrupted grid, random or halving search resumes: only the
    trials still missing run, and the results are those of an uninterrupted search."""

    def __init__(self, trials: Trials, storage: str, study_name: str):
        self.trials = trials
        self.study = load_study(study_name, storage)

    def run_trials(
        self, points: Sequence[Mapping[str, float]], steps: int, seed: int
    ) -> Iterator[RunResult]:
        """The runs of ``points`` in their order (see :class:`Trials`), stored ones first read."""
        stored: dict[str, list[RunResult]] = {}
        for trial in _completed(self.study):
            run = RunResult.from_dict(trial.user_attrs["run"])
            stored.setdefault(trial.user_attrs["key"], []).append(run)
        keys = [_trial_key(point, steps, seed) for point in points]
        missing = [p for p, k in zip(points, keys, strict=True) if not stored.get(k)]
        fresh = self.trials.run_trials(missing, steps, seed) if missing else iter(())
        for key in keys:
            if stored.get(key):
                yield stored[key].pop(0)
                continue
            run = next(fresh)
            attrs = {"key": key, "run": run.to_dict()}
            value = run.best()["valid_loss"]
            self.study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
            yield run


def stored(trials: Trials, storage: str | None, study_name: str) -> Trials:
    """``trials`` recorded in ``storage`` (:class:`StoredTrials`), or as they are without one."""
    return trials if storage is None else StoredTrials(trials, storage, study_name)


def stored_search(
    search: Callable[[], SearchResult], storage: str | None, study_name: str
) -> SearchResult:
    """``search()``, kept whole in the Optuna study ``study_name`` at ``storage`` (one trial per
    run) and read back from it once complete: for a search, such as PBT, whose runs depend on
    each other and so resume as a whole. A study left incomplete by an interruption is
    dropped and the search reruns."""
    if storage is None:
        return search()
    study = load_study(study_name, storage)
    done = _completed(study)
    if done and len(done) == done[0].user_attrs["of"]:
        runs = [RunResult.from_dict(t.user_attrs["run"]) for t in done]
        return SearchResult(done[0].user_attrs["method"], runs)
    if study.trials:
        optuna.delete_study(study_name=study_name, storage=storage)
        study = load_study(study_name, storage)
    result = search()
    for run in result.runs:
        attrs = {"method": result.method, "of": len(result.runs), "run": run.to_dict()}
        value = run.best()["valid_loss"]
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    return result


def _trial_key(point: Mapping[str, float], steps: int, seed: int) -> str:
    return json.dumps({"point": dict(sorted(point.items())), "steps": steps, "seed": seed})


def tpe_search(
    trials: Trials,
    specs: Sequence[HyperparameterSpec],
    n_trials: int,
    steps: int,
    seed: int = 0,
    storage: str | None = DEFAULT_STORAGE,
    study_name: str = "stn_tpe",
    progress: bool = False,
    batch: int = 1,
) -> SearchResult:
    """Optuna's TPE sampler over the bounded hyperparameters, minimising the early-stopped
    validation loss, asking for ``batch`` trials at a time (ask and tell), which ``trials`` may
    run side by side. ``batch`` is a setting of the search: the points TPE proposes depend on
    it, not on how many workers run them.

    The study is stored at ``storage`` (any SQLAlchemy URL) and loaded if it exists, so an
    interrupted study resumes: only the trials still missing run. Each trial's curve is stored
    with it."""
    _check_trials(n_trials)
    if not is_positive_int(batch):
        raise ValueError(f"batch={batch!r} must be a positive integer")
    study = open_study(study_name, storage, seed, n_trials)
    limits = {s.name: bounds(s) for s in specs}

    def point(trial: optuna.Trial) -> dict[str, float]:
        return {n: trial.suggest_float(n, lo, hi) for n, (lo, hi) in limits.items()}

    missing = n_trials - len(_completed(study))
    with progress_bar(None, progress, total=max(missing, 0), desc="tpe", unit="trial") as bar:
        while missing > 0:
            asked = [study.ask() for _ in range(min(batch, missing))]
            runs = trials.run_trials([point(t) for t in asked], steps, seed)
            for trial, run in zip(asked, runs, strict=True):
                trial.set_user_attr("run", run.to_dict())
                study.tell(trial, run.best()["valid_loss"])
                bar.update()
            missing -= len(asked)
    runs = [RunResult.from_dict(t.user_attrs["run"]) for t in _completed(study)[:n_trials]]
    return SearchResult("tpe", runs)


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE,)
    return sorted(study.get_trials(deepcopy=False, states=states), key=lambda t: t.number)


def _check_trials(n_trials: int) -> None:
    if not is_positive_int(n_trials):
        raise ValueError(f"n_trials={n_trials!r} must be a positive integer")
