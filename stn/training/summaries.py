"""TensorBoard summaries of a run: hyperparameters, perturbation scales, losses and metrics.

Written from the chunk outputs after each chunk, so the compiled loop is untouched. Open them
with ``tensorboard --logdir <log_dir>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from stn.method.stn import STNConfig
from stn.training.record import RunState
from stn.util.checks import is_positive_int


class SummaryLog:
    """Scalar summaries every ``every`` cycles (default: the first multiple of the evaluation
    interval that is at least 10), tagged ``hyperparameters/<name>``, ``scales/<name>``,
    ``loss/train``, ``loss/valid_objective`` and ``metrics/<name>``."""

    def __init__(
        self,
        log_dir: str | os.PathLike,
        names: Sequence[str],
        metric_names: Sequence[str],
        config: STNConfig,
        every: int | None = None,
    ):
        eval_every = config.eval_every
        every = eval_every * -(-10 // eval_every) if every is None else every
        if not is_positive_int(every) or every % eval_every:
            raise ValueError(
                f"log_every={every!r} must be a positive multiple of eval_every={eval_every}: "
                "metrics are logged at evaluations"
            )
        self.names, self.metric_names = tuple(names), tuple(metric_names)
        self.every, self.eval_every = every, eval_every
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def write(self, part: dict[str, np.ndarray], offset: int) -> None:
        """Log the logged cycles of one trimmed chunk output that began after cycle ``offset``."""
        first = offset + self.every - offset % self.every
        cycles = np.arange(first, offset + part["done"] + 1, self.every)
        rows = cycles - offset - 1
        eval_rows = (cycles - offset) // self.eval_every - 1
        self._write(
            tf.constant(cycles, tf.int64),
            part["values"][rows],
            part["stddev"][rows],
            part["weight_loss"][rows],
            part["hyper_loss"][rows],
            part["metrics"][eval_rows].reshape(len(cycles), len(self.metric_names)),
        )
        self.writer.flush()

    @tf.function(reduce_retracing=True)
    def _write(self, cycles, values, stddev, weight_loss, hyper_loss, metrics) -> None:
        """One compiled loop over the logged cycles: eager summary ops cost ~0.3 ms each."""
        with self.writer.as_default():
            for i in tf.range(tf.shape(cycles)[0]):
                with tf.compat.v1.name_scope(None):  # tags without the loop's "while/"
                    self._write_cycle(
                        cycles[i], values[i], stddev[i], weight_loss[i], hyper_loss[i], metrics[i]
                    )

    def _write_cycle(self, step, values, stddev, weight_loss, hyper_loss, metrics) -> None:
        """The summaries of one cycle (traced once, inside the loop of ``_write``)."""
        for j, name in enumerate(self.names):
            tf.summary.scalar(f"hyperparameters/{name}", values[j], step=step)
            tf.summary.scalar(f"scales/{name}", stddev[j], step=step)
        tf.summary.scalar("loss/train", weight_loss, step=step)
        tf.summary.scalar("loss/valid_objective", hyper_loss, step=step)
        for j, name in enumerate(self.metric_names):
            tf.summary.scalar(f"metrics/{name}", metrics[j], step=step)

    def start(self, trainer: object, state: RunState) -> None:
        """Nothing to do before the first chunk: the writer is open."""

    def chunk(self, trainer: object, state: RunState, part: dict[str, np.ndarray]) -> None:
        self.write(part, offset=state.done - part["done"])

    def close(self) -> None:
        self.writer.close()
