"""Experiment configurations: the toy problem as one dataclass, its variants, many seeds.

An experiment is data (every knob, validated), ``build()`` turns it into an :class:`STN`, and
``study`` reuses one compiled graph for many seeds through ``STN.reset``. From a shell, one run
with checkpoints and TensorBoard logs (rerun the same command to resume it after a crash)::

    python -m stn.experiments.toy --variant default --seed 3 --checkpoint-dir runs/seed3 \
        --log-dir runs/seed3/logs --output runs/seed3/trajectory.npz
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import tensorflow as tf

from stn.experiments import diagnostics
from stn.experiments.workers import Workers, WorkerSettings, map_runs, split
from stn.method.models import ToyHyperNet
from stn.method.stn import STN, STNConfig
from stn.tasks.toy import ToyTask, x_range_spec
from stn.training.loop import Trainer
from stn.training.progress import progress_bar
from stn.training.record import DivergenceError, Trajectory
from stn.util.checks import is_positive_int
from stn.util.io import exit_on_sigterm
from stn.util.settings import setting


@dataclass(frozen=True)
class Hypertraining:
    """The knobs every STN experiment shares: the seed, the hypernetwork's options (the
    variants of :data:`VARIANTS`) and Algorithm 1's steps and learning rates. Defaults: the
    design document's settings with the paper's per-unit hypernetwork."""

    seed: int = 0  # fixes the initialisation and every random draw of the run
    per_unit: bool = True  # hyper weights scale each unit (the paper) or each layer
    hyper_init: str = "paper"  # initialisation of the hyper weights: "paper" or "design"
    hypernet_input: str = "plain"  # what the hypernetwork reads: "plain" or "centered"
    weight_step: str = "joint"  # how a weight step splits φ: "joint", "split" or "delta"
    scale_init: float = 0.5  # σ0 = softplus(s): the initial perturbation stddev of u
    warmup_steps: int = 5  # weight steps before the first cycle
    train_steps: int = 2  # weight steps per cycle
    valid_steps: int = 2  # hyperparameter steps per cycle
    weight_lr: float = 0.01  # Adam's learning rate for the weights
    hyper_lr: float = 0.003  # Adam's learning rate for λ
    scale_lr: float = 0.003  # Adam's learning rate for the perturbation scale
    entropy_weight: float = 1e-3  # τ, the weight of the entropy term
    chunk_cycles: int = 1000  # cycles per compiled chunk (no number depends on it)
    jit_compile: bool = True  # compile the chunk with XLA
    draws: str = "per_step"  # random numbers drawn by each step, or "per_chunk" (keyed by cycle)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")

    def config(self) -> STNConfig:
        """Algorithm 1's settings: every field that is an :class:`STNConfig` one."""
        names = {f.name for f in fields(STNConfig)}
        return STNConfig(**{k: v for k, v in asdict(self).items() if k in names})


@dataclass(frozen=True)
class ToyExperiment(Hypertraining):
    """Every knob of the toy STN run: the shared ones and the toy's network, data and budget."""

    batch_size: int = 100  # examples per training and validation batch
    depth: int = 3  # hidden layers of the hypernetwork
    width: int = 4  # units per hidden layer
    activation: str = "relu"  # hidden activation
    x_range_init: float = 0.5  # initial x_range, the training inputs' half-width
    validation_range: float = 2.0  # V: validation inputs are uniform on [−V, V]
    max_cycles: int = 10000  # budget of cycles
    target: float | None = 0.05  # stop once the validation loss is below it (None: never)
    snapshot_every: int = 200  # cycles between snapshots of the learned function

    @classmethod
    def from_parameters(cls, **params: object) -> ToyExperiment:
        """Build from notebook parameters, naming any unknown one."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**params)

    def task(self) -> ToyTask:
        return ToyTask(batch_size=self.batch_size, validation_range=self.validation_range)

    def build(self, seed: int | Sequence[int] | None = None) -> Trainer:
        """The trainer of this run; of the population whose members are the runs with the given
        seeds when ``seed`` is a sequence (:mod:`stn.method.population`)."""
        seed = self.seed if seed is None else seed
        model_fn = functools.partial(
            ToyHyperNet,
            depth=self.depth,
            width=self.width,
            per_unit=self.per_unit,
            hyper_init=self.hyper_init,
            activation=self.activation,
        )
        spec = x_range_spec(self.x_range_init, self.scale_init)
        return Trainer(STN(self.task(), [spec], model_fn, self.config(), seed=seed))


#: The robustness study's variants, all options of the one training loop. Each name says what
#: the variant changes: the response's scale per layer (the design document's draft) or per unit
#: (the paper), the hypernetwork's input (plain or centered) and the weight step (joint, split
#: in one update, or Delta-STN's published two-phase step on the linearized prediction).
_PER_LAYER = dict(per_unit=False, hyper_init="design")
_PER_UNIT = dict(per_unit=True, hyper_init="paper")
_CENTERED = dict(per_unit=True, hyper_init="zero", hypernet_input="centered")
_SPLIT = {**_CENTERED, "weight_step": "split"}
_DELTA = {**_CENTERED, "weight_step": "delta"}
_LEAKY = dict(activation="leaky_relu")
VARIANTS: dict[str, dict[str, object]] = {
    "per-layer scale": _PER_LAYER,
    "per-unit scale": _PER_UNIT,
    "centered": _CENTERED,
    "centered + split step": _SPLIT,
    "delta-stn": _DELTA,
    "per-layer scale + warm-up 500": {**_PER_LAYER, "warmup_steps": 500},
    "per-unit scale + leaky ReLU": {**_PER_UNIT, **_LEAKY},
    "centered + split step + width 8": {**_SPLIT, "width": 8},
    "centered + split step + leaky ReLU": {**_SPLIT, **_LEAKY},
    "delta-stn + leaky ReLU": {**_DELTA, **_LEAKY},
}
#: What ``make figures`` and the notebooks use, chosen in the robustness study.
DEFAULT_VARIANT = "centered + split step + leaky ReLU"
VARIANTS["default"] = VARIANTS[DEFAULT_VARIANT]
#: The settings some variant chooses: passing None for one of them keeps the variant's value.
VARIANT_SETTINGS = frozenset(key for settings in VARIANTS.values() for key in settings)


def variant(name: str, **settings: object) -> ToyExperiment:
    """The variant ``name`` of :class:`ToyExperiment`, with ``settings`` on top.

    A variant keeps its own value of a setting unless ``settings`` gives one explicitly; None
    for a setting that variants choose (see ``VARIANT_SETTINGS``) means "the variant's value",
    so a notebook can pass all its parameters and still run ``"... + width 8"`` at width 8.
    """
    if name not in VARIANTS:
        raise ValueError(f"variant={name!r} is unknown; allowed: {', '.join(VARIANTS)}")
    given = {k: v for k, v in settings.items() if not (v is None and k in VARIANT_SETTINGS)}
    return ToyExperiment.from_parameters(**{**VARIANTS[name], **given})


@dataclass(frozen=True)
class ToySettings(WorkerSettings):
    """The toy notebook's settings: one variant run from its parameters cell, a seed table
    and its claim. A setting left None keeps the variant's value (see :func:`variant`)."""

    seed: int = setting(ge=0)
    variant: str = setting(choices=VARIANTS)
    batch_size: int = setting(ge=1)
    depth: int = setting(ge=1)
    width: int | None = setting(ge=1)
    weight_lr: float = setting(gt=0)
    hyper_lr: float = setting(gt=0)
    scale_lr: float = setting(gt=0)
    entropy_weight: float = setting(ge=0)
    warmup_steps: int | None = setting(ge=0)
    train_steps: int = setting(ge=1)
    valid_steps: int = setting(ge=1)
    max_cycles: int = setting(ge=1)
    target: float | None = setting(gt=0)  # None: no early stop
    validation_range: float = setting(gt=0)
    snapshot_every: int = setting(ge=1)  # and a divisor of the chunk: STNConfig
    report_seeds: int = setting(ge=1)
    distance_bound: float = setting(gt=0)
    output_dir: str = setting()
    checkpoint_dir: str | None = setting()
    log_dir: str | None = setting()

    def experiment(self) -> ToyExperiment:
        """The variant with every :class:`ToyExperiment` setting given here on top."""
        known = {f.name for f in fields(ToyExperiment)}
        return variant(self.variant, **{k: v for k, v in asdict(self).items() if k in known})

    def results(self, trajectory: Trajectory, rows: list[dict[str, object]]) -> dict:
        """What ``figures/toy.json`` records: the main run's end and the seed table."""
        columns = ("seed", "x_range", "distance", "cycles", "outcome")
        seeds = [{k: row[k] for k in columns} for row in rows]
        return {
            "main": {"seed": self.seed, "cycles": trajectory.cycles, **trajectory.final()},
            "seeds": seeds,
            "successes": sum(row["outcome"] == "success" for row in seeds),
        }


def study(
    experiment: ToyExperiment,
    seeds: Iterable[int],
    diagnose: bool = False,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    workers: int | Workers = 1,
    population: int = 1,
) -> tuple[list[dict[str, object]], list[Trajectory]]:
    """Run ``experiment`` once per seed, compiling once and resetting the variables in place.

    Returns one row per seed (final x_range and distance, outcome, and with ``diagnose`` the
    measurements of :mod:`stn.experiments.diagnostics` at the start and the end) and the
    trajectories. With ``checkpoint_dir``, each run checkpoints into a folder named by its
    seeds, so an interrupted study reruns only the unfinished ones.

    With ``population`` > 1, consecutive seeds run as populations of that many members, one
    compiled program each (:mod:`stn.method.population`). A member is its seed's single run to
    rounding, which the toy's chaotic dynamics amplify after a few hundred cycles, so
    ``population`` is a setting of the study: its numbers depend on it. With ``workers`` > 1
    the populations (or seeds) are dealt to that many processes (see
    :mod:`stn.experiments.workers`); no number depends on ``workers``.
    """
    seeds, workers = list(seeds), Workers.of(workers)
    if workers.count > 1 and len(seeds) > population:
        parts = split(seeds, workers.count, group=population)
        args = [
            (experiment, part, diagnose, False, checkpoint_dir, 1, population) for part in parts
        ]
        return merge_studies(seeds, map_runs(study, args, workers))
    rows, runs = [], []
    with progress_bar(None, progress, total=len(seeds), desc="seeds", unit="seed") as bar:
        for row, trajectory in _seed_runs(experiment, seeds, diagnose, checkpoint_dir, population):
            row["success"] = row["outcome"] == "success"
            rows.append(row)
            runs.append(trajectory)
            bar.update()
            bar.set_postfix(success=f"{sum(r['success'] for r in rows)}/{len(rows)}")
    return rows, runs


def _seed_runs(
    experiment: ToyExperiment,
    seeds: list[int],
    diagnose: bool,
    checkpoint_dir: str | os.PathLike | None,
    population: int,
) -> Iterator[tuple[dict[str, object], Trajectory]]:
    """Each seed's row and trajectory, run alone or in populations of ``population`` members.
    The diagnostics read one run's state: a member's is loaded into a single run's variables."""
    if not is_positive_int(population):
        raise ValueError(f"population={population!r} must be a positive integer")
    single, members = experiment.build(), None
    for i in range(0, len(seeds), population):
        group = seeds[i : i + population]
        starts = {}
        for seed in group if diagnose else ():
            single.reset(seed)
            starts[seed] = diagnostics.diagnose_start(single)
        name = "seed_" + "_".join(map(str, group))
        directory = None if checkpoint_dir is None else Path(checkpoint_dir) / name
        if len(group) == 1:
            single.reset(group[0])
            trajectories = [single.run(checkpoint_dir=directory)]
        else:
            if members is None or members.stn.population != len(group):
                members = experiment.build(tuple(group))
            members.reset(tuple(group))
            trajectories = members.run(checkpoint_dir=directory)
        for j, (seed, trajectory) in enumerate(zip(group, trajectories, strict=True)):
            if len(group) > 1:
                load_member(members.stn, j, single.stn)
            end = diagnostics.diagnose_end(single, trajectory)
            yield {"seed": seed, **starts.get(seed, {}), **end}, trajectory


def load_member(population: STN, j: int, single: STN) -> None:
    """Load member ``j``'s weights, λ and perturbation scale into the single run ``single``."""
    hp, one = population.hyperparameters, single.hyperparameters
    pairs = [*zip(population.model.weights, single.model.weights, strict=True)]
    pairs += [(hp.unconstrained, one.unconstrained), (hp.scale, one.scale)]
    for member, var in pairs:
        var.assign(tf.reshape(member[j], var.shape))


def merge_studies(
    seeds: list[int], parts: Iterable[tuple[list[dict[str, object]], list[Trajectory]]]
) -> tuple[list[dict[str, object]], list[Trajectory]]:
    """The studies of disjoint parts of ``seeds`` as one study, in the order of ``seeds``."""
    by_seed = {
        row["seed"]: (row, run) for rows, runs in parts for row, run in zip(rows, runs, strict=True)
    }
    rows, runs = zip(*(by_seed[seed] for seed in seeds), strict=True)
    return list(rows), list(runs)


def success_rate(rows: list[dict[str, object]]) -> float:
    return float(np.mean([r["success"] for r in rows]))


def main(argv: list[str] | None = None) -> int:
    """Run one toy experiment from the command line; see the module docstring."""
    parser = argparse.ArgumentParser(description="Run one toy STN experiment.")
    parser.add_argument("--variant", default="default", help=f"one of: {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-cycles", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="override a ToyExperiment field, e.g. --set target=None --set chunk_cycles=100",
    )  # fmt: skip
    parser.add_argument("--checkpoint-dir", help="save here every chunk; resume from here")
    parser.add_argument("--checkpoint-every", type=int, help="cycles between checkpoints")
    parser.add_argument("--log-dir", help="TensorBoard summaries (tensorboard --logdir DIR)")
    parser.add_argument("--output", help="write the trajectory here (.npz)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    try:
        overrides = dict(_parse_setting(text) for text in args.set)
        if args.max_cycles is not None:
            overrides["max_cycles"] = args.max_cycles
        experiment = variant(args.variant, seed=args.seed, **overrides)
        trajectory = experiment.build().run(
            progress=not args.no_progress,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every,
            log_dir=args.log_dir,
        )
    except (ValueError, TypeError, DivergenceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if not isinstance(error, DivergenceError) else 3
    if args.output:
        trajectory.save(args.output)
    final = ", ".join(f"{k}={v:.4g}" for k, v in trajectory.final().items())
    print(f"{trajectory.cycles} cycles in {trajectory.seconds:.1f} s: {final}")
    return 0


def _parse_setting(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--set {text!r} must look like NAME=VALUE")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


if __name__ == "__main__":
    sys.exit(main())
