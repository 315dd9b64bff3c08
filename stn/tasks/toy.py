"""The design document's toy problem: fit y = x², tuning the half-width of the training inputs."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE, HyperparameterSpec
from stn.method.models import Batch, HyperModel
from stn.tasks.metrics import sup_distance
from stn.util.checks import is_positive_int


def x_range_spec(initial: float = 0.5, scale: float = 0.5) -> HyperparameterSpec:
    """The toy's only hyperparameter: the half-width of the training inputs, in (0.01, 10)."""
    return HyperparameterSpec("x_range", initial, lower=0.01, upper=10.0, scale=scale)


class ToyTask:
    """Fit y = x². Training inputs x = x_range·U(−1, 1) per example (x_range is the
    hyperparameter, so it reaches the validation loss only through the hypernetwork);
    validation inputs U(−V, V); evaluation on a grid of [−V, V] with the sup-norm distance."""

    stop_metric = "distance"
    supports_population = True  # batches may carry a leading member axis
    dtype = DEFAULT_DTYPE  # the JAX reference's precision (stn.experiments.jax_toy)

    def __init__(
        self,
        batch_size: int = 100,
        validation_range: float = 2.0,
        grid_size: int = 100,
    ):
        for name, value in (("batch_size", batch_size), ("grid_size", grid_size)):
            if not is_positive_int(value):
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not validation_range > 0:
            raise ValueError(f"validation_range={validation_range!r} must be positive")
        self.batch_size = batch_size
        self.validation_range = float(validation_range)
        v = tf.constant(validation_range, self.dtype)
        self.grid = tf.linspace(-v, v, grid_size)[:, tf.newaxis]

    def train_batch(self, generator: tf.random.Generator) -> Batch:
        return (generator.uniform([self.batch_size, 1], -1.0, 1.0, dtype=self.dtype),)

    def valid_batch(self, generator: tf.random.Generator) -> Batch:
        v = self.validation_range
        return (generator.uniform([self.batch_size, 1], -v, v, dtype=self.dtype),)

    def train_loss(
        self,
        model: HyperModel,
        batch: Batch,
        hnet_input: tf.Tensor,
        values: tf.Tensor,
        generator: tf.random.Generator,
    ) -> tf.Tensor:
        x = values[..., :1] * batch[0]  # x_range is the task's one hyperparameter
        return _mean_squared_error(model(x, hnet_input), tf.square(x))

    def valid_loss(self, model: HyperModel, batch: Batch, hnet_input: tf.Tensor) -> tf.Tensor:
        x = batch[0]
        return _mean_squared_error(model(x, hnet_input), tf.square(x))

    def evaluate(
        self, model: HyperModel, hnet_input: Callable[[int], tf.Tensor]
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The sup-norm distance to x² on the grid and the prediction there (one per member of
        a population, whose inputs [P, grid, H] the grid is broadcast to)."""
        hnet = hnet_input(self.grid.shape[0])
        if hnet.shape.rank == 2:
            grid = self.grid
        else:
            grid = tf.broadcast_to(self.grid, [hnet.shape[0], *self.grid.shape])
        prediction = model(grid, hnet)[..., 0]
        return {"distance": sup_distance(self.grid[:, 0] ** 2, prediction)}, prediction


def _mean_squared_error(prediction: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """The mean over the batch [batch, 1], or each member's mean over [P, batch, 1]."""
    return tf.reduce_mean(tf.square(prediction - target), axis=[-2, -1])
