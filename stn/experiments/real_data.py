"""Real data: one STN run against grid, random and TPE search and successive halving, and
against Population Based Training, at equal cost accounting.

Every method is scored the same way: the model is evaluated on the whole validation and test sets
every ``eval_every_steps`` training steps, and a run's result is the evaluation with the lowest
validation loss (early stopping). A search's result is its best trial. Budgets are counted in
training steps (an STN step is a weight step or a hyper step; warm-up steps count too) and the
wall time of every run, compilation included, is recorded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy import stats

from stn.experiments.baselines import (
    DEFAULT_STORAGE,
    FixedTrainer,
    RunResult,
    SearchResult,
    Trials,
    grid_points,
    halving_search,
    random_points,
    search,
    stored,
    stored_search,
    tpe_search,
)
from stn.experiments.pbt import check_pbt, pbt_search
from stn.experiments.workers import WorkerPool, Workers, WorkerSettings
from stn.method.hyperparameters import HyperparameterSpec
from stn.method.models import HyperCNN, HyperMLP, HyperModel
from stn.method.stn import STN, STNConfig
from stn.tasks.classification import (
    DATASETS,
    ClassificationTask,
    ImageDataset,
    classification_specs,
    load_dataset,
)
from stn.training.loop import Trainer
from stn.training.record import Trajectory
from stn.util.checks import check_choice, is_positive_int
from stn.util.io import write_atomic, write_results_json
from stn.util.settings import setting

MODELS = {"mlp": HyperMLP, "cnn": HyperCNN}
#: Each spends n_trials · trial_steps steps; successive halving spreads them over more points,
#: stopping most of them early.
SEARCHES = ("grid", "random", "tpe", "halving")
#: Successive halving's rate and rungs: the best 1/η of a rung go on to η times the steps.
HALVING_ETA, HALVING_RUNGS = 3, 3
#: Finds a schedule, as STN does: PBT, at ``PBT_BUDGET`` times STN's steps at most.
SCHEDULES = ("pbt",)
PBT_BUDGET = 5
#: References, not competitors: the plain model at STN's initial and at its best-checkpoint
#: hyperparameters, and STN's own hypernetwork at those values held fixed (does STN's *schedule*
#: beat its own values held fixed, with and without its extra hyper weights?).
REFERENCES = ("fixed_initial", "fixed_stn", "fixed_stn_hyper")
#: The precisions an experiment may train at: float64, as the toy does, or float32, the default,
#: as the paper's code does, which is twice as fast on a CPU (its random draws are float32 draws,
#: so a seed gives another sample, not a rounding of the float64 one). A seed fixes either's bits
#: for one compiled code: XLA's options (``stn.util.xla``) and the CPU's extensions.
DTYPES = ("float64", "float32")
METRICS = ("valid_loss", "valid_accuracy", "test_loss", "test_accuracy")
#: Every method, in the table's order.
METHODS = ("stn", *SEARCHES, *SCHEDULES, *REFERENCES)


@dataclass
class MethodResult:
    """One method on one seed: its early-stopped metrics and hyperparameters, total steps and
    seconds, and the best validation loss so far against the steps spent so far."""

    method: str
    best: dict[str, float]
    steps: int
    seconds: float
    curve_steps: np.ndarray
    curve_loss: np.ndarray

    @classmethod
    def from_search(cls, result: SearchResult) -> MethodResult:
        steps, loss = result.curve()
        return cls(result.method, result.best(), result.total_steps, result.seconds, steps, loss)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["curve_steps"], d["curve_loss"] = self.curve_steps.tolist(), self.curve_loss.tolist()
        return d


@dataclass
class Comparison:
    """Every method on one seed, and STN's trajectory (its hyperparameter schedules)."""

    seed: int
    results: dict[str, MethodResult]
    trajectory: Trajectory
    warmup_steps: int
    steps_per_cycle: int
    config: dict = field(default_factory=dict)

    def claim(self, max_fraction: float = 0.2) -> dict[str, object]:
        """The paper's claim on this seed: STN's best validation loss is at least as good as
        the best search method's, spending at most ``max_fraction`` of each one's steps."""
        stn = self.results["stn"]
        searches = [self.results[m] for m in SEARCHES]
        best_search = min(searches, key=lambda r: r.best["valid_loss"])
        fraction = stn.steps / min(r.steps for r in searches)
        return {
            "seed": self.seed,
            "stn_valid_loss": stn.best["valid_loss"],
            "best_search": best_search.method,
            "best_search_valid_loss": best_search.best["valid_loss"],
            "step_fraction": fraction,
            "as_good": stn.best["valid_loss"] <= best_search.best["valid_loss"],
            "cheap": fraction <= max_fraction,
        }

    def to_dict(self) -> dict:
        t = self.trajectory
        return {
            "seed": self.seed,
            "config": self.config,
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "schedule": {
                "names": list(t.names),
                "values": t.values.tolist(),
                "stddev": t.stddev.tolist(),
                "steps": self.stn_steps(np.arange(1, t.cycles + 1)).tolist(),
            },
        }

    def stn_steps(self, cycles: np.ndarray) -> np.ndarray:
        """Training steps spent by STN at the end of the given (1-based) cycles."""
        return self.warmup_steps + self.steps_per_cycle * np.asarray(cycles)


#: The longest chunk of an STN run: checkpoints are taken between chunks.
CHUNK_CYCLES = 300


@dataclass(frozen=True)
class RealDataExperiment:
    """The comparison's settings. Defaults are the official CNN settings where they exist
    (cycles of 2 weight steps and 1 hyper step, λ and σ Adam 3e-3, τ = 1e-3, σ0 = 0.5, initial
    dropout 0.05, uncentered hypernetwork input) and Adam 1e-3 for the weights of every method.
    Each search runs ``n_trials`` trials of ``trial_steps`` steps (grid and random search and
    successive halving in populations of at most ``trial_population`` trials in this process,
    if more than 1; else dealt to the workers, as TPE's always are); PBT runs ``pbt_population``
    members in rounds of ``pbt_interval_steps`` steps, as many rounds as fit in ``PBT_BUDGET``
    times STN's steps. Every method trains at the precision ``dtype``."""

    dataset: str = "digits"
    model: str = "mlp"
    n_train: int | None = None
    n_valid: int | None = None
    batch_size: int = 32
    valid_batch_size: int = 100
    weight_lr: float = 1e-3
    hyper_lr: float = 3e-3
    scale_lr: float = 3e-3
    entropy_weight: float = 1e-3
    scale_init: float = 0.5
    warmup_steps: int = 600
    stn_cycles: int = 1800
    train_steps: int = 2
    valid_steps: int = 1
    trial_steps: int = 6000
    n_trials: int = 27
    eval_every_steps: int = 75
    tpe_batch: int = 2
    trial_population: int = 1
    pbt_population: int = 5
    pbt_interval_steps: int = 600
    dtype: str = "float32"
    storage: str | None = DEFAULT_STORAGE

    def __post_init__(self) -> None:
        check_choice("model", self.model, tuple(MODELS))
        if not is_positive_int(self.trial_population):
            raise ValueError(
                f"trial_population={self.trial_population!r} must be a positive integer"
            )
        check_choice("dtype", self.dtype, DTYPES)
        shortest = HALVING_ETA ** (HALVING_RUNGS - 1)
        if self.trial_steps < shortest:
            raise ValueError(
                f"trial_steps={self.trial_steps} must be at least {shortest}: successive "
                f"halving's first rung trains for trial_steps / {shortest} steps"
            )
        per_cycle = self.train_steps + self.valid_steps
        if self.eval_every_steps % per_cycle:
            raise ValueError(
                f"eval_every_steps={self.eval_every_steps} must be a multiple of train_steps + "
                f"valid_steps = {per_cycle} (STN evaluates after whole cycles)"
            )
        if self.stn_cycles % self.eval_cycles:
            raise ValueError(
                f"stn_cycles={self.stn_cycles} must be a multiple of eval_every_steps / "
                f"(train_steps + valid_steps) = {self.eval_cycles}"
            )

    @property
    def stn_steps(self) -> int:
        return self.warmup_steps + self.stn_cycles * (self.train_steps + self.valid_steps)

    def check_pbt_budget(self) -> None:
        """Raise ValueError unless at least one PBT round fits in its budget (checked when the
        comparison runs: an experiment that only trains STN needs no PBT)."""
        if self.pbt_population * self.pbt_interval_steps > PBT_BUDGET * self.stn_steps:
            raise ValueError(
                f"pbt_population={self.pbt_population} × pbt_interval_steps="
                f"{self.pbt_interval_steps} exceeds PBT's budget, {PBT_BUDGET} × STN's "
                f"{self.stn_steps} steps: not one round fits; lower either"
            )
        check_pbt(self.pbt_population, self.pbt_interval_steps, self.pbt_rounds)

    @property
    def pbt_rounds(self) -> int:
        """PBT's rounds: as many as fit in ``PBT_BUDGET`` times STN's steps."""
        return PBT_BUDGET * self.stn_steps // (self.pbt_population * self.pbt_interval_steps)

    def fingerprint(self) -> str:
        """A short hash of the settings that change results (names the Optuna study)."""
        settings = {k: v for k, v in asdict(self).items() if k != "storage"}
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]

    def study_name(self, seed: int) -> str:
        """The Optuna study of ``seed``'s TPE search; the other searches' add a suffix."""
        return f"{self.dataset}-{self.model}-seed{seed}-{self.fingerprint()}"

    def stn_config(self) -> STNConfig:
        return STNConfig(
            warmup_steps=self.warmup_steps,
            train_steps=self.train_steps,
            valid_steps=self.valid_steps,
            max_cycles=self.stn_cycles,
            target=None,
            weight_lr=self.weight_lr,
            hyper_lr=self.hyper_lr,
            scale_lr=self.scale_lr,
            entropy_weight=self.entropy_weight,
            chunk_cycles=self.chunk_cycles,
            eval_every=self.eval_cycles,
            snapshot_every=self.chunk_cycles,
            unroll_steps=True,  # as the committed results were made (loops round differently)
        )

    @property
    def tf_dtype(self) -> tf.DType:
        """``dtype`` as TensorFlow names it."""
        return tf.as_dtype(self.dtype)

    @property
    def eval_cycles(self) -> int:
        """The STN run's evaluation interval in cycles (``stn_cycles`` is a multiple of it)."""
        return self.eval_every_steps // (self.train_steps + self.valid_steps)

    @property
    def chunk_cycles(self) -> int:
        """The STN run's chunk: the largest proper divisor of ``stn_cycles`` (the whole run if
        there is none) that is a whole number of evaluation intervals and at most
        ``CHUNK_CYCLES``, so a checkpointed run resumes from its last chunk, not its start."""
        interval = self.eval_cycles
        chunks = range(interval, min(self.stn_cycles // 2, CHUNK_CYCLES) + 1, interval)
        return max((c for c in chunks if self.stn_cycles % c == 0), default=self.stn_cycles)

    def data(self, seed: int) -> ImageDataset:
        return load_dataset(self.dataset, seed, self.n_train, self.n_valid)

    def model_fn(
        self, n_hyper: int, generator: tf.random.Generator, data: ImageDataset, hyper: bool = True
    ) -> HyperModel:
        """The network for ``data``'s images: the hyper one STN trains, or the plain one."""
        return MODELS[self.model](
            n_hyper, generator, input_shape=data.input_shape, hyper=hyper, dtype=self.tf_dtype
        )

    def problem(self, data: ImageDataset) -> tuple[ClassificationTask, list[HyperparameterSpec]]:
        """The classification task on ``data`` and the hyperparameters tuned on it."""
        probe = self.model_fn(1, tf.random.Generator.from_seed(0), data)
        specs = classification_specs(probe.n_dropout, scale=self.scale_init)
        names = [s.name for s in specs]
        batches = self.batch_size, self.valid_batch_size
        return ClassificationTask(data, names, *batches, self.tf_dtype), specs

    def stn_trainer(self, seed: int | Sequence[int], data: ImageDataset) -> Trainer:
        """The STN run of ``seed`` on ``data``, or a population of runs on it when ``seed`` is
        a sequence (see :mod:`stn.method.population`)."""
        task, specs = self.problem(data)
        model_fn = functools.partial(self.model_fn, data=data)
        return Trainer(STN(task, specs, model_fn, self.stn_config(), seed=seed))

    def run(
        self,
        seed: int,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        log_dir: str | os.PathLike | None = None,
        pool: WorkerPool | None = None,
    ) -> Comparison:
        """STN, the four searches, PBT and the three references on one seed (data split
        included).

        ``checkpoint_dir`` and ``log_dir`` apply to the STN run (see ``Trainer.run``); the TPE study
        resumes from its storage. The baselines' trials run in ``pool`` (this process if None)."""
        self.check_pbt_budget()
        data = self.data(seed)
        _, specs = self.problem(data)
        trainer = self.stn_trainer(seed, data)
        trajectory = trainer.run(progress=progress, checkpoint_dir=checkpoint_dir, log_dir=log_dir)
        per_cycle = self.train_steps + self.valid_steps
        comparison = Comparison(seed, {}, trajectory, self.warmup_steps, per_cycle, asdict(self))
        comparison.results["stn"] = self._stn_result(comparison)
        trials = TrialPool(self, pool or WorkerPool())
        comparison.results.update(self._searches(trials, specs, seed, progress))
        comparison.results["pbt"] = self._pbt(specs, seed, trials.pool.workers)
        comparison.results.update(self._references(trials, specs, comparison.results["stn"], seed))
        return comparison

    def fixed_trainer(
        self, seed: int, hyper: bool = False, members: int | None = None
    ) -> FixedTrainer:
        """The trainer at fixed hyperparameters on ``seed``'s data: of the plain network, which
        every search's trial uses, or (``hyper``) of STN's hypernetwork reading the fixed λ; a
        population of ``members`` trials at a time if given."""
        data = self.data(seed)
        task, specs = self.problem(data)
        model_fn = functools.partial(self.model_fn, hyper=hyper, data=data)
        return FixedTrainer(
            task, specs, model_fn, "adam", self.weight_lr, self.eval_every_steps, members=members
        )

    def _references(
        self, trials: TrialPool, specs: list[HyperparameterSpec], stn: MethodResult, seed: int
    ) -> dict[str, MethodResult]:
        """Trained for STN's steps at fixed values: the plain network at the initial values and
        at those of STN's best evaluation, and STN's hypernetwork at the latter."""
        initial = {s.name: s.initial for s in specs}
        best = {s.name: stn.best[s.name] for s in specs}
        plain = trials.run_trials([initial, best], self.stn_steps, seed)
        hyper = trials.run_trials([best], self.stn_steps, seed, hyper=True)
        runs = [*plain, *hyper]
        return {
            method: MethodResult.from_search(SearchResult(method, [run]))
            for method, run in zip(REFERENCES, runs, strict=True)
        }

    def _searches(
        self, trials: Trials, specs: list[HyperparameterSpec], seed: int, progress: bool
    ) -> dict[str, MethodResult]:
        """Grid, random and TPE search, each ``n_trials`` trials of ``trial_steps`` steps, and
        successive halving at the same budget; each keeps its trials in an Optuna study at
        ``storage`` and resumes from it."""
        steps, n = self.trial_steps, self.n_trials
        study = self.study_name(seed)
        fixed = trials if self.trial_population == 1 else PopulationTrials(self)
        kept = {
            m: stored(fixed, self.storage, f"{study}-{m}") for m in ("grid", "random", "halving")
        }
        runs = {
            "grid": lambda: search(
                kept["grid"], grid_points(specs, n), steps, seed, "grid", progress
            ),
            "random": lambda: search(
                kept["random"], random_points(specs, n, seed), steps, seed, "random", progress
            ),
            "tpe": lambda: tpe_search(
                trials, specs, n, steps, seed, self.storage, study, progress, self.tpe_batch
            ),
            "halving": lambda: halving_search(
                kept["halving"], specs, n, steps, seed, HALVING_ETA, HALVING_RUNGS, progress
            ),
        }
        return {method: MethodResult.from_search(run()) for method, run in runs.items()}

    def _pbt(self, specs: list[HyperparameterSpec], seed: int, workers: Workers) -> MethodResult:
        """PBT of the plain network on Ray Tune, on ``workers``' Ray (a local instance of their
        count when they are processes); kept whole in ``storage`` once finished."""
        ray_workers = Workers(workers.count, "ray", workers.address)
        trainer = functools.partial(cached_trainer, self, seed, False)
        result = stored_search(
            lambda: pbt_search(
                trainer, specs, self.pbt_population, self.pbt_interval_steps, self.pbt_rounds,
                seed, ray_workers,
            ),
            self.storage,
            f"{self.study_name(seed)}-pbt",
        )  # fmt: skip
        return MethodResult.from_search(result)

    @staticmethod
    def _stn_result(comparison: Comparison) -> MethodResult:
        t = comparison.trajectory
        i = int(np.argmin(t.metrics["valid_loss"]))
        cycle = int(t.eval_cycles[i])
        best = {"step": int(comparison.stn_steps(cycle))}
        best.update({k: float(t.metrics[k][i]) for k in METRICS})
        best.update({n: float(t.values[cycle - 1, j]) for j, n in enumerate(t.names)})
        steps = comparison.stn_steps(t.eval_cycles)
        total = int(comparison.stn_steps(t.cycles))
        loss = np.minimum.accumulate(t.metrics["valid_loss"])
        return MethodResult("stn", best, total, t.seconds, steps, loss)


class TrialPool:
    """Runs an experiment's baseline trials (:class:`~stn.experiments.baselines.Trials`) in
    ``pool``: in this process, or dealt to its workers, each of which builds a seed's trainer
    once. A trial's numbers do not depend on which process runs it."""

    def __init__(self, experiment: RealDataExperiment, pool: WorkerPool):
        self.experiment, self.pool = experiment, pool

    def run_trials(
        self, points: Sequence[Mapping[str, float]], steps: int, seed: int, hyper: bool = False
    ) -> Iterator[RunResult]:
        """The trials of the plain network, or (``hyper``) of STN's hypernetwork."""
        arguments = [(self.experiment, seed, dict(point), steps, hyper) for point in points]
        return self.pool.imap(run_trial, arguments)


class PopulationTrials:
    """Runs an experiment's baseline trials (:class:`~stn.experiments.baselines.Trials`) as
    populations in this process, on all its cores: a call's points in ⌈n/P⌉ groups of at most
    P = ``trial_population`` members, their sizes differing by one at most, each group one
    compiled program (:class:`~stn.experiments.baselines.FixedRun` with ``members``). The
    groups follow from the points alone, so the numbers do not depend on the workers."""

    def __init__(self, experiment: RealDataExperiment):
        self.experiment = experiment

    def run_trials(
        self, points: Sequence[Mapping[str, float]], steps: int, seed: int
    ) -> Iterator[RunResult]:
        """The runs of ``points``, in their order, a group at a time."""
        for group in population_groups(list(points), self.experiment.trial_population):
            trainer = cached_trainer(self.experiment, seed, False, len(group))
            yield from trainer.run(group, steps, seed)


def population_groups(points: list, size: int) -> list[list]:
    """``points`` cut in order into ⌈n/size⌉ groups whose sizes differ by one at most (the
    larger ones first)."""
    count = -(-len(points) // size)
    sizes = [len(points) // count + (i < len(points) % count) for i in range(count)]
    cuts = np.cumsum([0, *sizes])
    return [points[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


_TRAINERS: dict[tuple, FixedTrainer] = {}  # this process's, by experiment


def cached_trainer(
    experiment: RealDataExperiment, seed: int, hyper: bool, members: int | None = None
) -> FixedTrainer:
    """This process's trainer for ``experiment``, ``seed``, ``hyper`` and ``members`` (a
    population's size, or None), built on first use and then reused (it re-initialises itself
    for every trial); another seed's are dropped."""
    key = (experiment.fingerprint(), seed, hyper, members)
    if key not in _TRAINERS:
        for old in [k for k in _TRAINERS if k[:2] != key[:2]]:  # another seed's: done with
            del _TRAINERS[old]
        _TRAINERS[key] = experiment.fixed_trainer(seed, hyper, members)
    return _TRAINERS[key]


def run_trial(
    experiment: RealDataExperiment, seed: int, point: dict[str, float], steps: int, hyper: bool
) -> RunResult:
    """One trial at fixed values, on this process's trainer (:func:`cached_trainer`)."""
    return cached_trainer(experiment, seed, hyper).run(point, steps, seed)


@dataclass(frozen=True)
class RealDataSettings(WorkerSettings):
    """The real-data notebook's settings: the comparison on each seed, and where it writes."""

    seeds: list[int] = setting(min_length=1, unique=True, items={"ge": 0, "le": 2**32 - 1})
    dataset: str = setting(choices=DATASETS)
    model: str = setting(choices=tuple(MODELS))
    warmup_steps: int = setting(ge=0)
    stn_cycles: int = setting(ge=1)  # and a multiple of eval_every_steps / 3: RealDataExperiment
    trial_steps: int = setting(ge=1)
    n_trials: int = setting(ge=1)
    eval_every_steps: int = setting(ge=1)  # training steps; a multiple of 3 (one STN cycle)
    tpe_batch: int = setting(ge=1)  # trials TPE asks for at a time; its points depend on it
    trial_population: int = setting(ge=1)  # >1: grid, random and halving trials as populations
    pbt_population: int = setting(ge=2)
    pbt_interval_steps: int = setting(ge=1)  # training steps per PBT round
    dtype: str = setting(choices=DTYPES)
    storage: str = setting()
    output_dir: str = setting()
    checkpoint_dir: str | None = setting()
    log_dir: str | None = setting()

    def experiment(self) -> RealDataExperiment:
        known = {f.name for f in fields(RealDataExperiment)}
        return RealDataExperiment(**{k: v for k, v in asdict(self).items() if k in known})

    def check_together(self) -> None:
        """The claim compares one STN run with searches that each spend at least five times
        its steps."""
        experiment = self.experiment()
        experiment.check_pbt_budget()
        stn_steps = experiment.stn_steps
        if 5 * stn_steps > self.trial_steps * self.n_trials:
            raise ValueError(
                f"STN's {stn_steps} steps exceed a fifth of each search's "
                f"{self.trial_steps * self.n_trials}: raise trial_steps or n_trials, or lower "
                "stn_cycles"
            )


def summary(comparisons: Sequence[Comparison]) -> list[dict[str, object]]:
    """One row per method: mean and standard deviation over seeds of the early-stopped metrics,
    and the mean training steps and wall time per seed."""
    rows = []
    for method in METHODS:
        results = [c.results[method] for c in comparisons if method in c.results]
        if not results:
            continue
        row: dict[str, object] = {"method": method, "seeds": len(results)}
        for metric in METRICS:
            values = np.array([r.best[metric] for r in results])
            row[metric] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        row["steps"] = float(np.mean([r.steps for r in results]))
        row["seconds"] = float(np.mean([r.seconds for r in results]))
        if method != "stn":
            row.update(paired_columns(comparisons, method))
        rows.append(row)
    return rows


def paired_columns(comparisons: Sequence[Comparison], method: str) -> dict[str, object]:
    """A table row's paired statistics against STN, for the validation and the test loss:
    the mean of STN minus ``method`` over seeds, its 95% bootstrap interval and the number of
    seeds on which STN is at least as good."""
    columns: dict[str, object] = {}
    for metric in ("valid_loss", "test_loss"):
        paired = paired_difference(comparisons, metric, method)
        columns[f"{metric}_difference"] = paired["mean"]
        columns[f"{metric}_interval_95"] = paired["interval_95"]
        columns[f"{metric}_as_good"] = paired["as_good"]
    return columns


#: The paired comparison's default baseline: on each seed, the search with the lowest
#: validation loss (a minimum over that search's trials, so optimistically biased).
BEST_SEARCH = "best search"
#: Bootstrap resamples of the seeds for a paired interval, and the resampling's seed.
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def paired_difference(
    comparisons: Sequence[Comparison], metric: str = "valid_loss", baseline: str = BEST_SEARCH
) -> dict:
    """STN's early-stopped ``metric`` minus ``baseline``'s (a method, or on each seed the
    search with the lowest validation loss), per seed, with the mean difference, its 95%
    bootstrap interval (None with fewer than two seeds) and the seeds on which STN is at least
    as good."""
    differences = []
    for c in comparisons:
        if baseline == BEST_SEARCH:
            other = min((c.results[m] for m in SEARCHES), key=lambda r: r.best["valid_loss"])
        else:
            other = c.results[baseline]
        differences.append(c.results["stn"].best[metric] - other.best[metric])
    d = np.array(differences)
    return {
        "metric": metric,
        "baseline": baseline,
        "differences": d.tolist(),
        "mean": float(d.mean()),
        "interval_95": bootstrap_interval(d),
        "as_good": int((d <= 0).sum()),
        "seeds": len(d),
    }


def claim_test(comparisons: Sequence[Comparison]) -> dict:
    """The paper's claim held to a test that can fail: STN's early-stopped validation loss is
    not worse than the best search's, i.e. the 95% bootstrap interval of the paired difference
    (STN minus best search) reaches zero or below. ``holds`` is None with one seed (no
    interval); the step budget is part of the claim too (``cheap``: at most a fifth)."""
    paired = paired_difference(comparisons)
    interval = paired["interval_95"]
    return {
        "holds": None if interval is None else bool(interval[0] <= 0),
        "cheap": all(c.claim()["cheap"] for c in comparisons),
        **{k: paired[k] for k in ("mean", "interval_95", "as_good", "seeds")},
    }


#: The single training runs, whose curves show whether their budget let training flatten.
SINGLE_RUNS = ("stn", *REFERENCES)


def late_improvement(comparisons: Sequence[Comparison], fraction: float = 1 / 3) -> dict:
    """For each single run (STN and the references), how much its best validation loss so far
    improved over the last ``fraction`` of its steps, relative to its value there: the mean over
    seeds and the largest. Near 0 once training has flattened; large while it is still
    learning (the budget is too short)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r} must lie strictly between 0 and 1")
    out = {}
    for method in SINGLE_RUNS:
        gains = []
        for c in comparisons:
            r = c.results[method]
            cut = np.searchsorted(r.curve_steps, (1 - fraction) * r.curve_steps[-1], "right")
            before = r.curve_loss[max(cut - 1, 0)]
            gains.append(float((before - r.curve_loss[-1]) / before))
        out[method] = {"mean": float(np.mean(gains)), "max": float(np.max(gains))}
    return out


def bootstrap_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean, resampling the seeds (scipy's
    ``stats.bootstrap``, seeded): None with fewer than two values, a point when all agree."""
    if len(values) < 2:
        return None
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=level,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


CLAIM_OUTCOMES = {None: "not decided with one seed", True: "**holds**", False: "**fails**"}


def _interval_text(paired: dict) -> str:
    if paired["interval_95"] is None:
        return "no interval with one seed"
    low, high = paired["interval_95"]
    return f"95% interval [{low:+.4f}, {high:+.4f}]"


def verdict(comparisons: Sequence[Comparison]) -> str:
    """What the run measured, in words, every number computed from the results."""
    rows = {r["method"]: r for r in summary(comparisons)}
    claims = [c.claim() for c in comparisons]
    valid, tested = paired_difference(comparisons), paired_difference(comparisons, "test_loss")
    pbt = paired_difference(comparisons, "valid_loss", "pbt")
    test = claim_test(comparisons)

    ranking = sorted((m for m in rows if m not in REFERENCES), key=lambda m: rows[m]["valid_loss"])
    fraction = max(c["step_fraction"] for c in claims)
    return "\n".join(
        [
            f"* **Budget:** STN spent at most {fraction:.3f} of each search's training steps "
            f"({rows['stn']['steps']:.0f} against {rows['grid']['steps']:.0f}).",
            f"* **Validation loss:** STN was at least as good as the best search on "
            f"{valid['as_good']} of {valid['seeds']} seeds; STN minus best search: mean "
            f"{valid['mean']:+.4f} ({_interval_text(valid)}).",
            "* **Mean best validation loss, lowest first:** "
            + ", ".join(f"{m} {rows[m]['valid_loss']:.4f}" for m in ranking)
            + ".",
            f"* **The claim's test** (the interval of STN minus best search reaches 0): "
            f"{CLAIM_OUTCOMES[test['holds']]}.",
            f"* **Test loss at the best-validation checkpoint:** STN minus best search: mean "
            f"{tested['mean']:+.4f} ({_interval_text(tested)}).",
            f"* **Against PBT** (also a schedule; {rows['pbt']['steps']:.0f} steps): STN minus "
            f"PBT, validation loss: mean {pbt['mean']:+.4f} ({_interval_text(pbt)}); STN at "
            f"least as good on {pbt['as_good']} of {pbt['seeds']} seeds.",
            f"* **Schedule against its own values held fixed:** STN's mean best validation loss "
            f"{rows['stn']['valid_loss']:.4f}; its values held fixed in the plain network "
            f"(`fixed_stn`) {rows['fixed_stn']['valid_loss']:.4f} and in its own hypernetwork "
            f"(`fixed_stn_hyper`) {rows['fixed_stn_hyper']['valid_loss']:.4f}; the plain "
            f"network at the initial values (`fixed_initial`) "
            f"{rows['fixed_initial']['valid_loss']:.4f}.",
        ]
    )


def markdown_table(rows: Sequence[dict[str, object]]) -> str:
    """The paper's Table 2 layout: best validation loss, test loss and accuracy (mean ± std over
    seeds), each baseline's paired difference against STN (STN minus it: negative favours STN)
    with its 95% bootstrap interval and the seeds on which STN was at least as good, and the
    training steps and wall time per seed."""
    lines = [
        "| method | seeds | best valid loss | STN − method, valid [95% CI] | STN ≤ method (valid) "
        "| test loss | STN − method, test [95% CI] | STN ≤ method (test) | test accuracy "
        "| steps | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pm(row: dict, key: str) -> str:
        std = row[f"{key}_std"]
        return f"{row[key]:.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}")

    def paired(row: dict, metric: str) -> str:
        if f"{metric}_difference" not in row:
            return "—"
        interval = row[f"{metric}_interval_95"]
        text = "" if interval is None else f" [{interval[0]:+.4f}, {interval[1]:+.4f}]"
        return f"{row[f'{metric}_difference']:+.4f}{text}"

    def won(row: dict, metric: str) -> str:
        key = f"{metric}_as_good"
        return "—" if key not in row else f"{row[key]} of {row['seeds']}"

    for r in rows:
        lines.append(
            f"| {r['method']} | {r['seeds']} | {pm(r, 'valid_loss')} | {paired(r, 'valid_loss')} "
            f"| {won(r, 'valid_loss')} | {pm(r, 'test_loss')} | {paired(r, 'test_loss')} "
            f"| {won(r, 'test_loss')} | {pm(r, 'test_accuracy')} | {r['steps']:.0f} "
            f"| {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run_seeds(
    experiment: RealDataExperiment,
    seeds: Sequence[int],
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    log_dir: str | os.PathLike | None = None,
    workers: int | Workers = 1,
) -> list[Comparison]:
    """The whole comparison once per seed (data split, initialisation and noise all follow it),
    the baselines' trials dealt to ``workers`` (processes, or Ray: see
    :class:`~stn.experiments.workers.Workers`; no number depends on them).

    With ``checkpoint_dir`` (or ``log_dir``), seed s's STN run uses the subfolder
    ``<fingerprint>-seed_<s>``, so runs of other settings never share one."""
    if not seeds:
        raise ValueError("seeds=[] is not allowed: give at least one seed")

    def sub(root: str | os.PathLike | None, seed: int) -> Path | None:
        return None if root is None else Path(root) / f"{experiment.fingerprint()}-seed_{seed}"

    with WorkerPool(workers) as pool:
        return [
            experiment.run(seed, progress, sub(checkpoint_dir, seed), sub(log_dir, seed), pool)
            for seed in seeds
        ]


def write_results(
    comparisons: Sequence[Comparison], output_dir: str | os.PathLike, prefix: str = "real_data"
) -> dict[str, Path]:
    """Write, each atomically: the table (Markdown); the summary results file (the table's rows
    and the per-seed claim check, JSON); and every method's results with STN's schedules (JSON).
    Both JSON files carry the environment that made them. Returns the paths by kind."""
    out = Path(output_dir)
    rows = summary(comparisons)
    text = markdown_table(rows)
    claims = [c.claim() for c in comparisons]
    return {
        "table": write_atomic(out / f"{prefix}_table.md", lambda p: p.write_text(text)),
        "summary": write_results_json(
            out / f"{prefix}.json",
            {
                "table": rows,
                "claims": claims,
                "claim_test": claim_test(comparisons),
                "late_improvement": late_improvement(comparisons),
                "paired": {
                    m: paired_difference(comparisons, m) for m in ("valid_loss", "test_loss")
                },
            },
        ),
        "results": write_results_json(
            out / f"{prefix}_results.json", {"comparisons": [c.to_dict() for c in comparisons]}
        ),
    }
