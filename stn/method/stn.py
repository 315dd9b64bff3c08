"""Algorithm 1 of MacKay et al. (2019): the state of a self-tuning network and its steps.

One *cycle* is ``train_steps`` weight steps (training loss at λ + ε, updating φ) followed by
``valid_steps`` hyperparameter steps (validation loss at λ + ε minus τ·entropy, updating λ and the
perturbation scale s). What the hypernetwork reads and how a weight step splits φ are strategy
objects (:mod:`stn.method.variants`). The compiled loop that runs cycles and records them is
:class:`stn.training.loop.Trainer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import tensorflow as tf

from stn.method.draws import ChunkDraws
from stn.method.hyperparameters import Hyperparameters, HyperparameterSpec
from stn.method.models import Batch, HyperModel
from stn.method.optimizers import OPTIMIZERS, FusedOptimizer, make_optimizer
from stn.method.population import MemberMask, PopulationGenerator, check_like, population_size
from stn.method.variants import HYPERNET_INPUTS, WEIGHT_STEPS
from stn.util.checks import check_choice, is_count, is_positive_int

OptimizerInit = list[tuple[tf.Variable, object]]
#: where a run's random numbers come from: a generator each step draws from, or one draw per
#: chunk of cycles keyed by cycle (:mod:`stn.method.draws`)
DRAWS = ("per_step", "per_chunk")
TrainLoss = Callable[
    [HyperModel, Batch, tf.Tensor | None, tf.Tensor, tf.random.Generator], tf.Tensor
]


class Task(Protocol):
    """What Algorithm 1 needs from a problem: data, the two losses, and an evaluation.

    A task may also define ``check_specs(specs)``, which ``STN`` calls first to refuse
    hyperparameters the task cannot apply (``ClassificationTask`` does).
    """

    #: name of the evaluation metric compared with ``STNConfig.target``
    stop_metric: str
    #: the precision of its data, and so of the model and the hyperparameters
    dtype: tf.DType

    def train_batch(self, generator: tf.random.Generator) -> Batch: ...

    def valid_batch(self, generator: tf.random.Generator) -> Batch: ...

    #: training loss f(model, batch, hnet_input, values, generator), with the constrained
    #: hyperparameter ``values`` [batch, H] applied (augmentation, dropout, data generation) and
    #: the network reading ``hnet_input`` (None for a plain network)
    train_loss: TrainLoss

    def valid_loss(self, model: HyperModel, batch: Batch, hnet_input: tf.Tensor) -> tf.Tensor:
        """Validation loss F: no regularisation, λ reaches it only through the network."""
        ...

    def evaluate(
        self, model: HyperModel, hnet_input: Callable[[tf.Tensor | int], tf.Tensor]
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """Scalar metrics and a snapshot (e.g. predictions on a grid) at the unperturbed λ;
        ``hnet_input(n)`` gives the network input for n examples."""
        ...


@dataclass(frozen=True)
class STNConfig:
    """The knobs of Algorithm 1. Defaults are the design document's toy settings."""

    warmup_steps: int = 5
    train_steps: int = 2
    valid_steps: int = 2
    max_cycles: int = 10000
    target: float | None = 0.05
    weight_optimizer: str = "adam"
    weight_lr: float = 0.01
    hyper_optimizer: str = "adam"
    hyper_lr: float = 0.003
    scale_optimizer: str = "adam"
    scale_lr: float = 0.003
    entropy_weight: float = 1e-3
    hypernet_input: str = "plain"  # what the hypernetwork reads: "plain" or "centered"
    weight_step: str = "joint"  # how φ is updated: "joint", "split" or "delta"
    chunk_cycles: int = 1000
    eval_every: int = 1  # cycles between evaluations on the whole validation set
    snapshot_every: int = 200  # cycles between snapshots; a multiple of eval_every
    jit_compile: bool = True
    unroll_steps: bool = False  # repeat a cycle's steps unrolled in the program, not in a loop
    draws: str = "per_step"  # random numbers drawn by each step, or per chunk, keyed by cycle

    def __post_init__(self) -> None:
        positive = ("train_steps", "valid_steps", "max_cycles", "chunk_cycles")
        positive += ("eval_every", "snapshot_every")
        for name in positive:
            value = getattr(self, name)
            if not is_positive_int(value):
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name in ("jit_compile", "unroll_steps"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")
        if not is_count(self.warmup_steps):
            raise ValueError(f"warmup_steps={self.warmup_steps!r} must be an integer >= 0")
        for name in ("weight_lr", "hyper_lr", "scale_lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive finite number")
        if not (math.isfinite(self.entropy_weight) and self.entropy_weight >= 0):
            raise ValueError(f"entropy_weight={self.entropy_weight!r} must be >= 0")
        if self.target is not None and not self.target > 0:
            raise ValueError(f"target={self.target!r} must be positive or None (no early stop)")
        for name in ("weight_optimizer", "hyper_optimizer", "scale_optimizer"):
            check_choice(name, getattr(self, name), OPTIMIZERS)
        check_choice("hypernet_input", self.hypernet_input, tuple(HYPERNET_INPUTS))
        check_choice("weight_step", self.weight_step, tuple(WEIGHT_STEPS))
        check_choice("draws", self.draws, DRAWS)
        if self.snapshot_every % self.eval_every:
            raise ValueError(
                f"snapshot_every={self.snapshot_every} must be a multiple of "
                f"eval_every={self.eval_every}: snapshots are taken at evaluations"
            )
        for name in ("eval_every", "snapshot_every"):
            if self.chunk_cycles % getattr(self, name):
                raise ValueError(
                    f"{name}={getattr(self, name)} must divide chunk_cycles={self.chunk_cycles}"
                )
        if self.weight_step != "joint" and self.hypernet_input != "centered":
            raise ValueError(
                f"weight_step={self.weight_step!r} needs hypernet_input='centered': it trains "
                "the general weights at hypernetwork input 0"
            )


class STN(tf.Module):
    """A self-tuning network: hyperparameters, hypermodel, optimizers and the steps of
    Algorithm 1. ``model_fn(n_hyper, generator)`` builds the hypermodel; ``reset(seed)``
    re-initialises every variable in place, so many seeds share one compiled graph.

    ``seed`` is one run's seed, or a sequence of seeds: then the STN is a population
    (:mod:`stn.method.population`) whose member i is the run with ``seed[i]``."""

    def __init__(
        self,
        task: Task,
        specs: Sequence[HyperparameterSpec],
        model_fn: Callable[[int, tf.random.Generator], HyperModel],
        config: STNConfig = STNConfig(),
        seed: int | Sequence[int] = 0,
    ):
        super().__init__(name="stn")
        self.task, self.config, self.model_fn, self.seed = task, config, model_fn, seed
        self.population = population_size(seed, task)
        self.hyperparameters = Hyperparameters(specs, self.population, task.dtype)
        if hasattr(task, "check_specs"):
            task.check_specs(self.hyperparameters.specs)
        self.model = model_fn(self.hyperparameters.size, stream(seed, init_seed))
        check_dtype(self.model, task)
        self.generator = stream(seed, train_seed, config.draws)
        self.mask = None if self.population is None else MemberMask(self.population)
        self.hypernet_input = HYPERNET_INPUTS[config.hypernet_input]()
        self.weight_update = WEIGHT_STEPS[config.weight_step](
            lambda: make_optimizer(config.weight_optimizer, config.weight_lr)
        )
        self.hyper_optimizer = make_optimizer(config.hyper_optimizer, config.hyper_lr)
        self.scale_optimizer = make_optimizer(config.scale_optimizer, config.scale_lr)
        self.weight_update.build(self)
        self.hyper_optimizer.build([self.hyperparameters.unconstrained], self.mask)
        self.scale_optimizer.build([self.hyperparameters.scale], self.mask)
        self._optimizer_init = optimizer_state(self.optimizers)
        if isinstance(self.generator, ChunkDraws):
            self.generator.plan(self)  # traces the steps: how many numbers a cycle draws

    @property
    def optimizers(self) -> tuple[FusedOptimizer, ...]:
        return (*self.weight_update.optimizers, self.hyper_optimizer, self.scale_optimizer)

    def reset(self, seed: int | Sequence[int]) -> None:
        """Start over from ``seed`` (one per member in a population): fresh weights,
        hyperparameters, optimizers and noise."""
        check_like(seed, self.seed)
        self.seed = seed
        self.hyperparameters.reset()
        restart(self, self.hyperparameters.size, seed, self._optimizer_init)
        if self.mask is not None:
            self.mask.reset()

    # -- the pieces a step is made of -------------------------------------------------------------

    def batch_size(self, batch: Batch) -> tf.Tensor | int:
        """How many examples ``batch`` has (each member's, in a population)."""
        return dim(batch[0], 0 if self.population is None else 1)

    def network_input(self, perturbed: tf.Tensor) -> tf.Tensor:
        """What the hypernetwork reads for perturbed (unconstrained) hyperparameters."""
        hp = self.hyperparameters
        return self.hypernet_input.perturbed(perturbed, hp.per_example(hp.unconstrained))

    def eval_input(self, n: tf.Tensor | int) -> tf.Tensor:
        """What the hypernetwork reads for ``n`` examples at the unperturbed λ."""
        return self.hypernet_input.exact(self.hyperparameters.exact(n))

    def train_batch(self) -> tuple[Batch, tf.Tensor]:
        """A training batch and one perturbed λ + ε per example."""
        batch = self.task.train_batch(self.generator)
        return batch, self.hyperparameters.sample(self.batch_size(batch), self.generator)

    def train_loss(
        self, batch: Batch, hnet_input: tf.Tensor, unconstrained: tf.Tensor, model=None
    ) -> tf.Tensor:
        """f: the training loss with the hyperparameters ``unconstrained`` applied."""
        model = self.model if model is None else model
        values = self.hyperparameters.constrain(unconstrained)
        return self.task.train_loss(model, batch, hnet_input, values, self.generator)

    # -- Algorithm 1 ------------------------------------------------------------------------------

    @tf.autograph.experimental.do_not_convert  # straight-line code: skip AutoGraph's transpiler
    def weight_step(self) -> tf.Tensor:
        """φ ← φ − α1 ∂f(λ + ε, ŵ_φ(λ + ε))/∂φ, as the weight-step strategy splits φ."""
        return self.weight_update(self)

    @tf.autograph.experimental.do_not_convert
    def hyper_step(self) -> tf.Tensor:
        """λ, s ← descend F(λ + ε, ŵ_φ(λ + ε)) − τ·H[p(ε | s)]."""
        task, hp = self.task, self.hyperparameters
        batch = task.valid_batch(self.generator)
        noise = self.generator.normal([self.batch_size(batch), hp.size], dtype=hp.dtype)
        with tf.GradientTape() as tape:
            loss = task.valid_loss(self.model, batch, self.network_input(hp.perturbed(noise)))
            objective = loss - self.config.entropy_weight * hp.entropy()
        grad_lambda, grad_scale = tape.gradient(objective, [hp.unconstrained, hp.scale])
        self.hyper_optimizer.apply_gradients([(grad_lambda, hp.unconstrained)])
        self.scale_optimizer.apply_gradients([(grad_scale, hp.scale)])
        return objective

    @tf.autograph.experimental.do_not_convert
    def cycle(self) -> tuple[tf.Tensor, tf.Tensor]:
        """One cycle: T_train weight steps, then T_valid hyperparameter steps. Each repeats in
        a loop, so the compiled program holds one copy of each step (XLA's compile time grows
        faster than the program), or unrolled (``unroll_steps``), which rounds differently."""
        cfg = self.config
        lead = [] if self.population is None else [self.population]
        last = tf.zeros(lead, self.hyperparameters.dtype)  # a loss: one per member
        weight_loss = repeat(self.weight_step, cfg.train_steps, last, cfg.unroll_steps)
        hyper_objective = repeat(self.hyper_step, cfg.valid_steps, last, cfg.unroll_steps)
        return weight_loss, hyper_objective

    @tf.autograph.experimental.do_not_convert
    def evaluate(self) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The task's metrics and snapshot at the unperturbed λ."""
        return self.task.evaluate(self.model, self.eval_input)


def repeat(
    step: Callable[[], tf.Tensor], times: int, like: tf.Tensor, unroll: bool = False
) -> tf.Tensor:
    """What the last of ``times`` calls of ``step`` returns (a tensor shaped as ``like``), the
    calls in a ``tf.while_loop`` when there are several, or one after another (``unroll``)."""
    if unroll or times == 1:
        for _ in range(times):
            last = step()
        return last
    _, last = tf.while_loop(
        lambda i, _: i < times, lambda i, _: (i + 1, step()), (tf.constant(0), like)
    )
    return last


def dim(x: tf.Tensor, axis: int) -> tf.Tensor | int:
    """``x``'s size along ``axis``: an int when it is static, so draws traced with it know their
    shapes (:mod:`stn.method.draws` needs that)."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def init_seed(seed: int) -> int:
    """The seed of the random stream that initialises the weights of a run with ``seed``."""
    return 2 * seed


def train_seed(seed: int) -> int:
    """The seed of the random stream that a run with ``seed`` trains on."""
    return 2 * seed + 1


def stream(
    seed: int | Sequence[int], seed_of: Callable[[int], int], draws: str = "per_step"
) -> tf.random.Generator | PopulationGenerator | ChunkDraws:
    """The random stream ``seed_of(seed)`` of a run, or one per member of a population; drawn
    per chunk of cycles with ``draws="per_chunk"``."""
    if draws == "per_chunk":
        return ChunkDraws(seed_of(seed) if isinstance(seed, int) else [seed_of(s) for s in seed])
    if isinstance(seed, int):
        return tf.random.Generator.from_seed(seed_of(seed))
    return PopulationGenerator([seed_of(s) for s in seed])


def check_dtype(model: HyperModel, task: Task) -> None:
    """Raise ValueError unless ``model``'s weights have ``task``'s precision (its data's)."""
    if model.dtype != task.dtype:
        raise ValueError(
            f"model_fn built {model.dtype.name} weights for a {task.dtype.name} task: allowed "
            f"is {task.dtype.name} (pass dtype={task.dtype.name} to the model)"
        )


class Restartable(Protocol):
    """What :func:`restart` re-initialises: a model built by ``model_fn`` and a training stream."""

    model: HyperModel
    model_fn: Callable[[int, tf.random.Generator], HyperModel]
    generator: tf.random.Generator | PopulationGenerator | ChunkDraws


def restart(
    run: Restartable, n_hyper: int, seed: int | Sequence[int], optimizer_init: OptimizerInit
) -> None:
    """Start ``run`` over from ``seed``, in place: fresh weights (``model_fn(n_hyper, ·)``)
    from the stream ``init_seed(seed)``, the optimizers' variables back to ``optimizer_init``, and
    the training stream restarted at ``train_seed(seed)``. Compiled graphs keep working."""
    fresh = run.model_fn(n_hyper, stream(seed, init_seed))
    for old, new in zip(run.model.weights, fresh.weights, strict=True):
        old.assign(new)
    for var, value in optimizer_init:
        var.assign(value)
    if isinstance(seed, int):
        run.generator.reset_from_seed(train_seed(seed))
    else:
        run.generator.reset_from_seed([train_seed(s) for s in seed])


def optimizer_state(optimizers: Sequence[FusedOptimizer]) -> OptimizerInit:
    """The optimizers' variables with their current values, for :func:`restart`."""
    return [(v, v.numpy()) for opt in optimizers for v in opt.variables]
