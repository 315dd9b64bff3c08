"""Checkpoint and resume an STN run with ``tf.train.Checkpoint``.

A checkpoint holds the whole training state, grouped by role: elementary and hyper weights,
hyperparameters, perturbation scales, the optimizers' slots, the random generator, and the run's
record (cycle counter, stop flag, elapsed seconds and the trajectories so far). Restoring it and
running on gives, bit for bit, the run that was never interrupted. ``run.json`` beside the
checkpoints describes the run, so a checkpoint is never resumed into a different one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from stn.method.stn import STN
from stn.training.record import RECORD_KEYS, RunState
from stn.util.checks import is_positive_int
from stn.util.io import write_json


class RunRecord(tf.Module):
    """What a run has recorded so far, as variables a checkpoint can hold (shapes vary)."""

    def __init__(self) -> None:
        super().__init__(name="run_record")
        self.cycle = tf.Variable(0, dtype=tf.int64, trainable=False, name="cycle")
        self.stopped = tf.Variable(False, trainable=False, name="stopped")
        self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
        self.member_done = tf.Variable(  # a population's cycles per member; [] for one run
            tf.zeros([0], tf.int32), shape=tf.TensorShape(None), trainable=False, name="members"
        )
        self.arrays = {
            key: tf.Variable(
                tf.zeros([0], tf.float64), shape=tf.TensorShape(None), trainable=False, name=key
            )
            for key in RECORD_KEYS
        }

    def store(self, part: dict[str, np.ndarray], seconds: float) -> None:
        self.cycle.assign(int(part["done"]))
        self.stopped.assign(bool(part["stop"]))
        self.seconds.assign(seconds)
        self.member_done.assign(part.get("member_done", np.zeros([0], np.int32)))
        for key in RECORD_KEYS:
            self.arrays[key].assign(part[key])

    def part(self) -> dict[str, np.ndarray]:
        """The record as one merged, trimmed chunk output (see :func:`stn.training.record.trim`)."""
        part = {key: self.arrays[key].numpy() for key in RECORD_KEYS}
        part.update(done=int(self.cycle.numpy()), stop=bool(self.stopped.numpy()))
        member_done = self.member_done.numpy()
        if member_done.size:
            part["member_done"] = member_done
        return part


class RunCheckpoint:
    """Save ``trainer``'s state into ``directory`` every ``every`` cycles; restore the latest."""

    def __init__(self, trainer: STN, directory: str | os.PathLike, every: int | None = None):
        chunk = trainer.config.chunk_cycles
        every = chunk if every is None else every
        if not is_positive_int(every) or every % chunk:
            raise ValueError(
                f"checkpoint_every={every!r} must be a positive multiple of "
                f"chunk_cycles={chunk}: checkpoints are taken between chunks"
            )
        self.trainer, self.directory, self.every = trainer, Path(directory), every
        self.record = RunRecord()
        hp, model = trainer.hyperparameters, trainer.model
        self.checkpoint = tf.train.Checkpoint(
            elementary_weights=list(model.elementary_weights),
            hyper_weights=list(model.hyper_weights),
            hyperparameters=hp.unconstrained,
            scales=hp.scale,
            optimizer_slots=[v for opt in trainer.optimizers for v in opt.variables],
            generator=trainer.generator,
            record=self.record,
            **({} if trainer.mask is None else {"members": trainer.mask}),
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=2)

    def describe(self) -> dict[str, object]:
        """What identifies the run: its seed, settings, hyperparameters and weight shapes."""
        trainer = self.trainer
        return json.loads(
            json.dumps(
                {
                    "seed": trainer.seed,
                    "task": type(trainer.task).__name__,
                    "config": trainer.config.__dict__,
                    "hyperparameters": [spec.__dict__ for spec in trainer.hyperparameters.specs],
                    "weights": [list(v.shape) for v in trainer.model.weights],
                },
                default=repr,
            )
        )

    def restore(self) -> dict[str, np.ndarray] | None:
        """Load the latest checkpoint into the trainer; its record, or None if there is none."""
        described = self.describe()
        info = self.directory / "run.json"
        if self.manager.latest_checkpoint is None:
            write_json(info, described)
            return None
        saved = json.loads(info.read_text()) if info.exists() else {}
        if saved != described:
            differ = sorted(
                k for k in described.keys() | saved.keys() if saved.get(k) != described.get(k)
            )
            raise ValueError(
                f"checkpoint_dir={str(self.directory)!r} holds a different run "
                f"(differs in {', '.join(differ)}); use another directory or delete it"
            )
        self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
        return self.record.part()

    def due(self, cycle: int) -> bool:
        return cycle % self.every == 0

    def save(self, merged: dict[str, np.ndarray], seconds: float) -> None:
        """Save the state and the merged record of the run so far."""
        self.record.store(merged, seconds)
        self.manager.save(checkpoint_number=int(merged["done"]))

    # -- as a callback of Trainer.run -------------------------------------------------------------

    def start(self, trainer: object, state: RunState) -> None:
        """Resume: the restored record becomes the run so far."""
        restored = self.restore()
        if restored is not None:
            state.parts, state.done, state.stopped = [restored], restored["done"], restored["stop"]
            state.seconds_before = float(self.record.seconds.numpy())

    def chunk(self, trainer: object, state: RunState, part: dict[str, np.ndarray]) -> None:
        if self.due(state.done) or state.stopped or state.done >= state.total:
            self.save(state.merged(), state.seconds())

    def close(self) -> None:
        """Nothing to release: every save is complete when ``save`` returns."""
