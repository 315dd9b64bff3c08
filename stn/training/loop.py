"""The compiled loop that runs an :class:`~stn.method.stn.STN`'s cycles and records them.

``chunk_cycles`` cycles run inside one ``tf.function`` (a ``tf.range`` loop, XLA-compiled by
default) that records the trajectories in ``TensorArray``s and stops in-graph at the target, so a
seed gives the same run whatever the chunking. Between chunks, callbacks see what the chunk
recorded: checkpoints (:mod:`stn.training.checkpoints`), TensorBoard summaries
(:mod:`stn.training.summaries`) and the progress bar plug in there.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Protocol

import numpy as np
import tensorflow as tf

from stn.method.draws import ChunkDraws
from stn.method.hyperparameters import Hyperparameters
from stn.method.models import HyperModel
from stn.method.population import MemberMask, PopulationGenerator
from stn.method.stn import STNConfig, Task
from stn.training.checkpoints import RunCheckpoint
from stn.training.progress import ProgressBar
from stn.training.record import RECORD_KEYS, DivergenceError, RunState, Trajectory, trim
from stn.training.summaries import SummaryLog
from stn.util.checks import is_positive_int


class Callback(Protocol):
    """Plugs into :meth:`Trainer.run`: ``start`` before the first chunk (it may restore the
    state), ``chunk`` after each chunk with what it recorded, ``close`` at the end, always."""

    def start(self, trainer: Trainer, state: RunState) -> None: ...

    def chunk(self, trainer: Trainer, state: RunState, part: dict[str, np.ndarray]) -> None: ...

    def close(self) -> None: ...


class Runnable(Protocol):
    """What :class:`Trainer` runs: an :class:`~stn.method.stn.STN`, or anything with its
    state and steps (the baselines' fixed-hyperparameter run)."""

    config: STNConfig
    task: Task
    model: HyperModel
    hyperparameters: Hyperparameters
    population: int | None
    mask: MemberMask | None
    seed: int | Sequence[int]
    generator: tf.random.Generator | PopulationGenerator | ChunkDraws

    def reset(self, seed: int | Sequence[int]) -> None: ...

    def weight_step(self) -> tf.Tensor: ...

    def cycle(self) -> tuple[tf.Tensor, tf.Tensor]: ...

    def evaluate(self) -> tuple[dict[str, tf.Tensor], tf.Tensor]: ...


def compiled(method: Callable, **options: object) -> tf.types.experimental.PolymorphicFunction:
    """``tf.function(method, **options)`` for one object's own program. TensorFlow's retracing
    warning counts the traces of every function with the same code, so each new trainer's one
    trace would add to a count shared by all trainers; a partial has no code of its own, so the
    count is this program's."""
    return tf.function(functools.partial(method), **options)


class Trainer:
    """Runs ``stn`` in compiled chunks of cycles, one trace for every chunk and every seed."""

    def __init__(self, stn: Runnable):
        self.stn, self.config = stn, stn.config
        metrics, snapshot = stn.evaluate()  # eagerly, once: the recorded names and shapes
        self.metric_names = tuple(sorted(metrics))
        self._snapshot_shape = tuple(snapshot.shape)
        self.trace_count = 0
        self.compile_seconds = 0.0
        self._chunk = compiled(
            self._run_chunk,
            input_signature=[tf.TensorSpec([], tf.int32)] * 2,
            jit_compile=self.config.jit_compile,
        )

    @property
    def model(self):
        return self.stn.model

    @property
    def hyperparameters(self):
        return self.stn.hyperparameters

    @property
    def task(self):
        return self.stn.task

    def reset(self, seed: int) -> None:
        """Start over from ``seed`` (see :meth:`STN.reset`); the compiled chunk is kept."""
        self.stn.reset(seed)

    def _run_chunk(self, n_cycles: tf.Tensor, n_warmup: tf.Tensor) -> dict[str, tf.Tensor]:
        """``n_warmup`` weight steps, then up to ``n_cycles`` (≤ chunk_cycles) cycles in-graph,
        stopping early at the target. The loop always has ``chunk_cycles`` iterations at most,
        so XLA compiles one program whatever ``n_cycles`` is."""
        self.trace_count += 1  # Python side effect: runs once per trace
        cfg, stn, hp = self.config, self.stn, self.stn.hyperparameters
        size, metric_names, lead = cfg.chunk_cycles, self.metric_names, self.lead_shape
        values, stddev, wloss, hloss, metrics, snapshots = self._arrays()
        done, stop = tf.constant(0, tf.int32), tf.constant(False)
        member_done = tf.zeros(lead, tf.int32)  # cycles each member trained in this chunk
        stop_value = tf.fill(lead, tf.constant(np.inf, hp.dtype))
        self._warm_up(n_warmup)
        for i in tf.range(size):
            if i >= n_cycles:
                break
            w, h = self._cycle(i)
            values, stddev = values.write(i, hp.values()), stddev.write(i, hp.stddev())
            wloss, hloss = wloss.write(i, w), hloss.write(i, h)
            if cfg.eval_every == 1 or (i + 1) % cfg.eval_every == 0:
                m, snap = stn.evaluate()
                row = tf.stack([m[k] for k in metric_names], axis=-1)
                metrics = metrics.write(i // cfg.eval_every, row)
                if cfg.target is not None:
                    stop_value = m[stn.task.stop_metric]
                if (i + 1) % cfg.snapshot_every == 0:
                    snapshots = snapshots.write(i // cfg.snapshot_every, snap)
            done = i + 1
            member_done = self._count(member_done, done)
            if cfg.target is not None:
                stop = self._reached(stop_value < cfg.target)
            if stop:
                break
        if self._draws is not None:
            self._draws.advance(done)  # the cycles whose numbers the next chunk must not reuse
        out = {"done": done, "stop": stop, "values": values.stack(), "stddev": stddev.stack()}
        out.update(weight_loss=wloss.stack(), hyper_loss=hloss.stack())
        out.update(metrics=metrics.stack(), snapshots=snapshots.stack())
        return {**out, "member_done": member_done, "finite": self._finite(out)}

    def _arrays(self) -> tuple[tf.TensorArray, ...]:
        """What a chunk records: λ, softplus(s), the two losses (one row per cycle), metrics
        (per evaluation) and snapshots, each row with the population's axis first, if any."""
        cfg, size, lead = self.config, self.config.chunk_cycles, self.lead_shape
        dtype = self.stn.hyperparameters.dtype

        def array(n: int, shape: Sequence[int]) -> tf.TensorArray:
            return tf.TensorArray(dtype, size=n, element_shape=[*lead, *shape])

        n_hyper = self.stn.hyperparameters.size
        return (
            array(size, [n_hyper]),
            array(size, [n_hyper]),
            array(size, []),
            array(size, []),
            array(size // cfg.eval_every, [len(self.metric_names)]),
            array(size // cfg.snapshot_every, self._snapshot_shape[len(lead) :]),
        )

    @property
    def lead_shape(self) -> list[int]:
        """The leading axes of every recorded quantity: none, or [P] for a population."""
        return [] if self.stn.population is None else [self.stn.population]

    def _count(self, member_done: tf.Tensor, done: tf.Tensor) -> tf.Tensor:
        """Each member's cycles so far: the loop's for a run, its own in a population."""
        if self.stn.mask is None:
            return done
        return tf.where(self.stn.mask.active, done, member_done)

    def _reached(self, reached: tf.Tensor) -> tf.Tensor:
        """Whether to stop: the run reached the target, or every member of a population did
        (a member that reaches it stops training: :class:`~stn.method.population.MemberMask`)."""
        mask = self.stn.mask
        if mask is None:
            return reached
        mask.active.assign(mask.active & ~reached)
        return ~tf.reduce_any(mask.active)

    @property
    def _draws(self) -> ChunkDraws | None:
        """The run's random numbers if they are drawn per chunk (``STNConfig.draws``)."""
        generator = self.stn.generator
        return generator if isinstance(generator, ChunkDraws) else None

    def _cycle(self, i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The chunk's cycle ``i`` (in-graph), on its own numbers when they are drawn per chunk."""
        if self._draws is not None:
            self._draws.seek(i)
        return self.stn.cycle()

    def _warm_up(self, n_warmup: tf.Tensor) -> None:
        """Draw the chunk's numbers, if drawn per chunk; then ``n_warmup`` weight steps
        (in-graph), before a run's first cycle."""
        if self._draws is not None:
            self._draws.fill()
        for j in tf.range(self.config.warmup_steps):  # static bound: XLA specialises on bounds
            if j >= n_warmup:
                break
            self.stn.weight_step()

    def _finite(self, out: dict[str, tf.Tensor]) -> tf.Tensor:
        """Whether every recorded quantity and every weight is finite (in-graph)."""
        checked = [out[k] for k in ("values", "stddev", "weight_loss", "hyper_loss", "metrics")]
        checked += list(self.stn.model.weights)  # unwritten rows stack as zeros: finite
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(x)) for x in checked])

    def run(
        self,
        max_cycles: int | None = None,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        log_dir: str | os.PathLike | None = None,
        log_every: int | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> Trajectory | list[Trajectory]:
        """Warm up, then run chunks of cycles until the target or ``max_cycles`` is reached;
        the trajectory, or a population's, one per member (each cut where the member stopped).

        Continues from the current state (``reset(seed)`` first for a fresh run). The keywords
        add the standard callbacks: ``checkpoint_dir`` saves the state every ``checkpoint_every``
        cycles (default: every chunk) and at the end, and resumes from a checkpoint found there;
        ``log_dir`` writes TensorBoard summaries every ``log_every`` cycles; ``progress`` shows
        a bar. A NaN or infinite number raises :class:`DivergenceError` after its chunk."""
        total = self.config.max_cycles if max_cycles is None else max_cycles
        if not is_positive_int(total):
            raise ValueError(f"max_cycles={total!r} must be a positive integer")
        standard = self._standard_callbacks(
            progress, checkpoint_dir, checkpoint_every, log_dir, log_every
        )
        callbacks = [*standard, *callbacks]
        state = RunState(total)
        self.compile_seconds = 0.0  # this run's: nonzero only if one of its chunks traced
        try:
            for callback in callbacks:
                callback.start(self, state)
            while state.done < total and not state.stopped:
                part = self._next_chunk(state)
                state.parts.append(part)
                state.done, state.stopped = state.done + part["done"], part["stop"]
                for callback in callbacks:
                    callback.chunk(self, state, part)
        finally:
            for callback in callbacks:
                callback.close()
        return self._result(state)

    def _result(self, state: RunState) -> Trajectory | list[Trajectory]:
        if self.stn.population is not None:
            return self._members(state.merged(), state.seconds())
        return self._trajectory(state.merged(), state.seconds(), state.stopped)

    def _standard_callbacks(
        self,
        progress: bool,
        checkpoint_dir: str | os.PathLike | None,
        checkpoint_every: int | None,
        log_dir: str | os.PathLike | None,
        log_every: int | None,
    ) -> list[Callback]:
        """Checkpoints and summaries when their folder is given, and the progress bar."""
        names, metric_names, callbacks = self.stn.hyperparameters.names, self.metric_names, []
        if checkpoint_dir is not None:
            callbacks.append(RunCheckpoint(self.stn, checkpoint_dir, checkpoint_every))
        if log_dir is not None and self.stn.population is not None:
            raise ValueError(f"log_dir={str(log_dir)!r}: summaries are written for one run only")
        if log_dir is not None:
            callbacks.append(SummaryLog(log_dir, names, self.metric_names, self.config, log_every))
        if self.stn.population is not None:  # the bar counts cycles only
            names, metric_names = (), ()
        return [*callbacks, ProgressBar(progress, names, metric_names)]

    def _next_chunk(self, state: RunState) -> dict[str, np.ndarray]:
        """Run one chunk; its output trimmed to the cycles it ran."""
        n = min(self.config.chunk_cycles, state.total - state.done)
        t0, traces = time.perf_counter(), self.trace_count
        warmup = 0 if state.done else self.config.warmup_steps
        out = self._chunk(tf.constant(n, tf.int32), tf.constant(warmup, tf.int32))
        out = {k: _record(v.numpy()) for k, v in out.items()}
        if self.trace_count > traces:  # traced and compiled in this call
            self.compile_seconds += time.perf_counter() - t0
        part = trim(out, self.config)
        if not out["finite"]:
            raise self._divergence_of(part, offset=state.done)
        return part

    def _divergence_of(self, part: dict[str, np.ndarray], offset: int) -> DivergenceError:
        """The divergence error of a run, or of the first member of a population that diverged
        (its quantities named by member and seed)."""
        if self.stn.population is None:
            return self._divergence(part, offset)
        for j, seed in enumerate(self.stn.seed):
            member = self._member(part, j)
            if not all(np.isfinite(member[key]).all() for key in RECORD_KEYS):
                error = self._divergence(member, offset)
                named = {f"member {j} (seed {seed}): {k}": v for k, v in error.quantities.items()}
                return DivergenceError(error.cycle, named)
        return self._divergence(part, offset)

    @staticmethod
    def _member(part: dict[str, np.ndarray], j: int) -> dict[str, np.ndarray]:
        """Member ``j``'s rows of a population's record (all the cycles the loop ran)."""
        return {**part, **{key: part[key][:, j] for key in RECORD_KEYS}}

    def _divergence(self, part: dict[str, np.ndarray], offset: int) -> DivergenceError:
        """The error at the first cycle of the chunk where a recorded quantity is NaN or
        infinite, naming every such quantity; else naming the weights that are not finite."""
        names, eval_every = self.stn.hyperparameters.names, self.config.eval_every
        recorded = [("training loss", part["weight_loss"], 1)]
        recorded.append(("validation objective", part["hyper_loss"], 1))
        for j, n in enumerate(names):
            recorded.append((f"hyperparameter {n}", part["values"][:, j], 1))
            recorded.append((f"perturbation scale of {n}", part["stddev"][:, j], 1))
        for j, n in enumerate(self.metric_names):
            recorded.append((f"metric {n}", part["metrics"][:, j], eval_every))
        bad: dict[int, dict[str, float]] = {}
        for quantity, series, every in recorded:
            rows = np.flatnonzero(~np.isfinite(series))
            if rows.size:
                cycle = offset + (int(rows[0]) + 1) * every
                bad.setdefault(cycle, {})[quantity] = float(series[rows[0]])
        if bad:
            return DivergenceError(min(bad), bad[min(bad)])
        model, weights = self.stn.model, {}
        for group, variables in (
            ("elementary weight", model.elementary_weights),
            ("hyper weight", model.hyper_weights),
        ):
            for var in variables:
                value = var.numpy()
                if not np.isfinite(value).all():
                    weights[f"{group} {var.name}"] = float(value[~np.isfinite(value)][0])
        return DivergenceError(offset + part["done"], weights)

    def _members(self, merged: dict[str, np.ndarray], seconds: float) -> list[Trajectory]:
        """A population's record as one trajectory per member, cut where the member stopped;
        ``seconds`` is the population's time, shared by every member."""
        active = self.stn.mask.active.numpy()
        trajectories = []
        for j, done in enumerate(merged["member_done"]):
            member = {**self._member(merged, j), "done": int(done)}
            stopped = self.config.target is not None and not active[j]
            trajectories.append(self._trajectory(trim(member, self.config), seconds, stopped))
        return trajectories

    def _trajectory(
        self, merged: dict[str, np.ndarray], seconds: float, stopped: bool
    ) -> Trajectory:
        cfg, done, metrics = self.config, merged["done"], merged["metrics"]
        return Trajectory(
            names=self.stn.hyperparameters.names,
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


def _record(value: np.ndarray) -> np.ndarray:
    """A chunk's output as the record keeps it: floating point in float64 whatever the model's
    precision, so a trajectory's arrays have one type."""
    return value.astype(np.float64) if value.dtype.kind == "f" else value
