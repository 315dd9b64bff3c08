"""Algorithm 1 of MacKay et al. (2019): STN training, compiled into chunks of cycles.

One *cycle* is ``train_steps`` weight steps (training loss at λ + ε, updating φ) followed by
``valid_steps`` hyperparameter steps (validation loss at λ + ε minus τ·entropy, updating λ and the
perturbation scale s), then an evaluation at the unperturbed λ. ``chunk_cycles`` cycles run inside
one ``tf.function`` (a ``tf.range`` loop, XLA-compiled by default) that records the trajectories
in ``TensorArray``s and stops in-graph at the target, so a seed gives the same run whatever the
chunking. Variants are options of this one loop:

* ``centered``: the hypernetwork reads (λ + ε) − stop_gradient(λ) instead of λ + ε (Delta-STN);
* ``delta_split``: elementary (general) weights are trained at the unperturbed λ and the hyper
  (response) weights at λ + ε (Delta-STN).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf

from stn.checkpoints import RECORD_EVERY, RunCheckpoint
from stn.checks import check_choice, is_count, is_positive_int
from stn.hyperparameters import DTYPE, Hyperparameters, HyperparameterSpec
from stn.io import write_atomic
from stn.models import HyperModel
from stn.optimizers import OPTIMIZERS, FusedOptimizer, make_optimizer
from stn.progress import progress_bar
from stn.summaries import SummaryLog

Batch = tuple[tf.Tensor, ...]


class Task(Protocol):
    """What Algorithm 1 needs from a problem: data, the two losses, and an evaluation.

    A task may also define ``check_specs(specs)``, which ``STN`` calls first to refuse
    hyperparameters the task cannot apply (``ClassificationTask`` does).
    """

    #: name of the evaluation metric compared with ``STNConfig.target``
    stop_metric: str

    def train_batch(self, generator: tf.random.Generator) -> Batch: ...

    def valid_batch(self, generator: tf.random.Generator) -> Batch: ...

    def train_loss(
        self,
        model: HyperModel,
        batch: Batch,
        hnet_input: tf.Tensor,
        values: tf.Tensor,
        generator: tf.random.Generator,
    ) -> tf.Tensor:
        """Training loss f with the constrained hyperparameter ``values`` [batch, H] applied
        (augmentation, dropout, data generation) and the network reading ``hnet_input``."""
        ...

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
    centered: bool = False
    delta_split: bool = False
    chunk_cycles: int = 1000
    eval_every: int = 1
    snapshot_every: int = 200
    jit_compile: bool = True

    def __post_init__(self) -> None:
        positive = ("train_steps", "valid_steps", "max_cycles", "chunk_cycles")
        positive += ("eval_every", "snapshot_every")
        for name in positive:
            value = getattr(self, name)
            if not is_positive_int(value):
                raise ValueError(f"{name}={value!r} must be a positive integer")
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
        if self.delta_split and not self.centered:
            raise ValueError(
                "delta_split=True needs centered=True: Delta-STN trains the general weights "
                "at hypernetwork input 0"
            )


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


class STN(tf.Module):
    """A self-tuning network: hyperparameters, hypermodel, three optimizers and Algorithm 1.

    ``model_fn(n_hyper, generator)`` builds the hypermodel; ``reset(seed)`` re-initialises every
    variable in place, so many seeds share one compiled graph.
    """

    def __init__(
        self,
        task: Task,
        specs: Sequence[HyperparameterSpec],
        model_fn: Callable[[int, tf.random.Generator], HyperModel],
        config: STNConfig = STNConfig(),
        seed: int = 0,
    ):
        super().__init__(name="stn")
        self.task, self.config, self.model_fn, self.seed = task, config, model_fn, seed
        self.hyperparameters = Hyperparameters(specs)
        check_specs = getattr(task, "check_specs", None)
        if check_specs is not None:
            check_specs(self.hyperparameters.specs)
        self.model = model_fn(self.hyperparameters.size, _init_generator(seed))
        self.generator = tf.random.Generator.from_seed(_train_seed(seed))
        self.weight_optimizer = make_optimizer(config.weight_optimizer, config.weight_lr)
        self.hyper_optimizer = make_optimizer(config.hyper_optimizer, config.hyper_lr)
        self.scale_optimizer = make_optimizer(config.scale_optimizer, config.scale_lr)
        self.weight_optimizer.build(list(self.model.weights))
        self.hyper_optimizer.build([self.hyperparameters.unconstrained])
        self.scale_optimizer.build([self.hyperparameters.scale])
        self._optimizer_init = [(v, v.numpy()) for opt in self.optimizers for v in opt.variables]
        metrics, snapshot = self.evaluate()  # eagerly, once: the recorded names and shapes
        self.metric_names = tuple(sorted(metrics))
        self._snapshot_shape = tuple(snapshot.shape)
        self.trace_count = 0
        self.compile_seconds = 0.0
        self._chunk = tf.function(
            self._run_chunk,
            input_signature=[tf.TensorSpec([], tf.int32)] * 2,
            jit_compile=config.jit_compile,
        )

    @property
    def optimizers(self) -> tuple[FusedOptimizer, ...]:
        return (self.weight_optimizer, self.hyper_optimizer, self.scale_optimizer)

    def reset(self, seed: int) -> None:
        """Start over from ``seed``: fresh weights, hyperparameters, optimizers and noise."""
        self.seed = seed
        fresh_hp = Hyperparameters(self.hyperparameters.specs)
        fresh = self.model_fn(self.hyperparameters.size, _init_generator(seed))
        for old, new in zip(self.model.weights, fresh.weights, strict=True):
            old.assign(new)
        self.hyperparameters.unconstrained.assign(fresh_hp.unconstrained)
        self.hyperparameters.scale.assign(fresh_hp.scale)
        for var, value in self._optimizer_init:
            var.assign(value)
        self.generator.reset_from_seed(_train_seed(seed))

    # -- the network input for each phase -------------------------------------------------------

    def _hnet_input(self, perturbed: tf.Tensor) -> tf.Tensor:
        if self.config.centered:
            return perturbed - tf.stop_gradient(self.hyperparameters.unconstrained)
        return perturbed

    def _eval_input(self, n: tf.Tensor | int) -> tf.Tensor:
        exact = self.hyperparameters.exact(n)
        return tf.zeros_like(exact) if self.config.centered else exact

    # -- Algorithm 1 ----------------------------------------------------------------------------

    @tf.autograph.experimental.do_not_convert  # straight-line code: skip AutoGraph's transpiler
    def weight_step(self) -> tf.Tensor:
        """φ ← φ − α1 ∂f(λ + ε, ŵ_φ(λ + ε))/∂φ (Delta-STN: general weights at λ)."""
        task, hp, model = self.task, self.hyperparameters, self.model
        batch = task.train_batch(self.generator)
        perturbed = hp.sample(tf.shape(batch[0])[0], self.generator)
        with tf.GradientTape(persistent=self.config.delta_split) as tape:
            loss = task.train_loss(
                model, batch, self._hnet_input(perturbed), hp.constrain(perturbed), self.generator
            )
            if self.config.delta_split:
                exact = hp.exact(tf.shape(batch[0])[0])
                general_loss = task.train_loss(
                    model, batch, tf.zeros_like(exact), hp.constrain(exact), self.generator
                )
        if self.config.delta_split:
            general = list(model.elementary_weights)
            response = list(model.hyper_weights)
            grads = tape.gradient(general_loss, general) + tape.gradient(loss, response)
            variables = general + response
        else:
            variables = list(model.weights)
            grads = tape.gradient(loss, variables)
        self.weight_optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    @tf.autograph.experimental.do_not_convert
    def hyper_step(self) -> tf.Tensor:
        """λ, s ← descend F(λ + ε, ŵ_φ(λ + ε)) − τ·H[p(ε | s)]."""
        task, hp = self.task, self.hyperparameters
        batch = task.valid_batch(self.generator)
        noise = self.generator.normal([tf.shape(batch[0])[0], hp.size], dtype=DTYPE)
        with tf.GradientTape() as tape:
            hnet_input = self._hnet_input(hp.perturbed(noise))
            loss = task.valid_loss(self.model, batch, hnet_input)
            objective = loss - self.config.entropy_weight * hp.entropy()
        grad_lambda, grad_scale = tape.gradient(objective, [hp.unconstrained, hp.scale])
        self.hyper_optimizer.apply_gradients([(grad_lambda, hp.unconstrained)])
        self.scale_optimizer.apply_gradients([(grad_scale, hp.scale)])
        return objective

    @tf.autograph.experimental.do_not_convert
    def evaluate(self) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The task's metrics and snapshot at the unperturbed λ."""
        return self.task.evaluate(self.model, self._eval_input)

    def _run_chunk(self, n_cycles: tf.Tensor, n_warmup: tf.Tensor) -> dict[str, tf.Tensor]:
        """``n_warmup`` weight steps, then up to ``n_cycles`` (≤ chunk_cycles) cycles in-graph,
        stopping early at the target. The loop always has ``chunk_cycles`` iterations at most,
        so XLA compiles one program whatever ``n_cycles`` is."""
        self.trace_count += 1  # Python side effect: runs once per trace
        cfg, hp = self.config, self.hyperparameters
        size = cfg.chunk_cycles

        metric_names = self.metric_names

        def array(n: int, shape: Sequence[int]) -> tf.TensorArray:
            return tf.TensorArray(DTYPE, size=n, element_shape=shape)

        values, stddev = array(size, [hp.size]), array(size, [hp.size])
        wloss, hloss = array(size, []), array(size, [])
        metrics = array(size // cfg.eval_every, [len(metric_names)])
        snapshots = array(size // cfg.snapshot_every, self._snapshot_shape)
        done = tf.constant(0, tf.int32)
        stop = tf.constant(False)
        stop_value = tf.constant(np.inf, DTYPE)
        for j in tf.range(cfg.warmup_steps):  # static bound: XLA specialises on loop bounds
            if j >= n_warmup:
                break
            self.weight_step()
        w = h = tf.constant(np.nan, DTYPE)
        for i in tf.range(size):
            if i >= n_cycles:
                break
            for _ in range(cfg.train_steps):  # unrolled: T_train and T_valid are small
                w = self.weight_step()
            for _ in range(cfg.valid_steps):
                h = self.hyper_step()
            values = values.write(i, hp.values())
            stddev = stddev.write(i, hp.stddev())
            wloss = wloss.write(i, w)
            hloss = hloss.write(i, h)
            if cfg.eval_every == 1 or (i + 1) % cfg.eval_every == 0:
                m, snap = self.evaluate()
                metrics = metrics.write(i // cfg.eval_every, tf.stack([m[k] for k in metric_names]))
                stop_value = m[self.task.stop_metric]
                if (i + 1) % cfg.snapshot_every == 0:
                    snapshots = snapshots.write(i // cfg.snapshot_every, snap)
            done = i + 1
            if cfg.target is not None:
                stop = stop_value < cfg.target
            if stop:
                break
        out = {
            "done": done,
            "stop": stop,
            "values": values.stack(),
            "stddev": stddev.stack(),
            "weight_loss": wloss.stack(),
            "hyper_loss": hloss.stack(),
            "metrics": metrics.stack(),
            "snapshots": snapshots.stack(),
        }
        checked = [out[k] for k in ("values", "stddev", "weight_loss", "hyper_loss", "metrics")]
        checked += list(self.model.weights)  # unwritten rows stack as zeros: finite
        out["finite"] = tf.reduce_all([tf.reduce_all(tf.math.is_finite(x)) for x in checked])
        return out

    def run(
        self,
        max_cycles: int | None = None,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        log_dir: str | os.PathLike | None = None,
        log_every: int | None = None,
    ) -> Trajectory:
        """Warm up, then run chunks of cycles until the target or ``max_cycles`` is reached.

        Continues from the current state; call ``reset(seed)`` first for a fresh run. With
        ``checkpoint_dir``, the state is saved there every ``checkpoint_every`` cycles (default:
        every chunk) and at the end, and a run that finds a checkpoint there resumes from it.
        With ``log_dir``, TensorBoard summaries are written every ``log_every`` cycles. A loss,
        hyperparameter, scale, metric or weight that is NaN or infinite raises
        :class:`DivergenceError` at the end of the chunk it appeared in.
        """
        cfg = self.config
        total = cfg.max_cycles if max_cycles is None else max_cycles
        if not is_positive_int(total):
            raise ValueError(f"max_cycles={total!r} must be a positive integer")
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = RunCheckpoint(self, checkpoint_dir, checkpoint_every)
        log = None
        if log_dir is not None:
            log = SummaryLog(log_dir, self.hyperparameters.names, self.metric_names, cfg, log_every)
        restored = checkpoint.restore() if checkpoint is not None else None
        parts = [] if restored is None else [restored]
        before = float(checkpoint.record.seconds.numpy()) if restored is not None else 0.0
        done = 0 if restored is None else restored["done"]
        stopped = False if restored is None else restored["stop"]
        start = time.perf_counter()
        self.compile_seconds = 0.0  # this run's: nonzero only if one of its chunks traced
        try:
            with progress_bar(
                None, progress, total=total, initial=min(done, total), unit="cycle"
            ) as bar:
                while done < total and not stopped:
                    n = min(cfg.chunk_cycles, total - done)
                    t0, traces = time.perf_counter(), self.trace_count
                    warmup = 0 if done else cfg.warmup_steps
                    out = self._chunk(tf.constant(n, tf.int32), tf.constant(warmup, tf.int32))
                    out = {k: v.numpy() for k, v in out.items()}
                    if self.trace_count > traces:  # traced and compiled in this call
                        self.compile_seconds += time.perf_counter() - t0
                    part = _trim(out, cfg)
                    if not out["finite"]:
                        self._raise_divergence(part, offset=done)
                    if log is not None:
                        log.write(part, offset=done)
                    parts.append(part)
                    done, stopped = done + part["done"], part["stop"]
                    if not bar.disable:
                        bar.set_postfix(self._postfix(part), refresh=False)
                    bar.update(part["done"])
                    if checkpoint is not None and (
                        checkpoint.due(done) or stopped or done >= total
                    ):
                        parts = [_merge(parts)]
                        checkpoint.save(parts[0], before + time.perf_counter() - start)
        finally:
            if log is not None:
                log.close()
        seconds = before + time.perf_counter() - start
        return self._trajectory(_merge(parts), seconds, stopped)

    def _postfix(self, part: dict[str, np.ndarray]) -> dict[str, str]:
        """The latest hyperparameter values and metrics, for the progress bar."""
        names = self.hyperparameters.names
        last = {n: part["values"][-1, j] for j, n in enumerate(names) if len(part["values"])}
        if len(part["metrics"]):
            last.update(zip(self.metric_names, part["metrics"][-1], strict=True))
        return {k: f"{v:.4g}" for k, v in last.items()}

    def _raise_divergence(self, part: dict[str, np.ndarray], offset: int) -> None:
        """Raise DivergenceError at the first cycle of the chunk where a recorded quantity is
        NaN or infinite, naming every such quantity; else name the weights that are not."""
        names, metrics, eval_every = (
            self.hyperparameters.names,
            part["metrics"],
            self.config.eval_every,
        )
        recorded = [("training loss", part["weight_loss"], 1)]
        recorded.append(("validation objective", part["hyper_loss"], 1))
        recorded += [(f"hyperparameter {n}", part["values"][:, j], 1) for j, n in enumerate(names)]
        recorded += [
            (f"perturbation scale of {n}", part["stddev"][:, j], 1) for j, n in enumerate(names)
        ]
        recorded += [
            (f"metric {n}", metrics[:, j], eval_every) for j, n in enumerate(self.metric_names)
        ]
        bad: dict[int, dict[str, float]] = {}
        for quantity, series, every in recorded:
            rows = np.flatnonzero(~np.isfinite(series))
            if rows.size:
                cycle = offset + (int(rows[0]) + 1) * every
                bad.setdefault(cycle, {})[quantity] = float(series[rows[0]])
        if bad:
            cycle = min(bad)
            raise DivergenceError(cycle, bad[cycle])
        weights = {}
        for group, variables in (
            ("elementary weight", self.model.elementary_weights),
            ("hyper weight", self.model.hyper_weights),
        ):
            for var in variables:
                value = var.numpy()
                if not np.isfinite(value).all():
                    weights[f"{group} {var.name}"] = float(value[~np.isfinite(value)][0])
        raise DivergenceError(offset + part["done"], weights)

    def _trajectory(
        self, merged: dict[str, np.ndarray], seconds: float, stopped: bool
    ) -> Trajectory:
        cfg, done = self.config, merged["done"]
        metrics = merged["metrics"]
        return Trajectory(
            names=self.hyperparameters.names,
            values=merged["values"],
            stddev=merged["stddev"],
            weight_loss=merged["weight_loss"],
            hyper_loss=merged["hyper_loss"],
            metrics={n: metrics[:, j] for j, n in enumerate(self.metric_names)},
            eval_cycles=np.arange(cfg.eval_every, done + 1, cfg.eval_every),
            snapshots=merged["snapshots"],
            snapshot_cycles=np.arange(cfg.snapshot_every, done + 1, cfg.snapshot_every),
            seconds=seconds,
            stopped=stopped,
            extra={"config": asdict(cfg), "compile_seconds": self.compile_seconds},
        )


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


def _trim(out: dict[str, np.ndarray], cfg: STNConfig) -> dict[str, np.ndarray]:
    """A chunk's output cut to the cycles it ran."""
    done = int(out["done"])
    trimmed = {"done": done, "stop": bool(out["stop"])}
    for key, every in RECORD_EVERY.items():
        trimmed[key] = out[key][: done // getattr(cfg, every) if every else done]
    return trimmed


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Trimmed chunk outputs (or an earlier merge) joined into one run so far."""
    if len(parts) == 1:
        return parts[0]
    merged = {"done": sum(p["done"] for p in parts), "stop": parts[-1]["stop"]}
    merged.update({key: np.concatenate([p[key] for p in parts]) for key in RECORD_EVERY})
    return merged


def _init_generator(seed: int) -> tf.random.Generator:
    return tf.random.Generator.from_seed(2 * seed)


def _train_seed(seed: int) -> int:
    return 2 * seed + 1
