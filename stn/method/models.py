"""Hypermodels: networks built from hyper layers, with their variables grouped by role."""

from __future__ import annotations

import math

import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE
from stn.method.layers import (
    Conv2D,
    Dense,
    HyperConv2D,
    HyperDense,
    max_pool_2x2,
    per_example_dropout,
)
from stn.util.checks import check_choice, is_positive_int

#: a batch of data: inputs, and targets where the task has them
Batch = tuple[tf.Tensor, ...]

ACTIVATIONS = {"relu": tf.nn.relu, "leaky_relu": tf.nn.leaky_relu, "tanh": tf.math.tanh}


class HyperModel(tf.Module):
    """Base class: a stack of hyper layers whose weights are grouped by role.

    A subclass sets ``self.layers`` to its weight layers (``HyperDense``, ``HyperConv2D``, or
    plain ``Dense``, ``Conv2D``) and defines ``__call__``; the weight groups that ``STN`` trains
    and checkpoints, and the kernel norm that weight decay penalises, follow from ``layers``.
    """

    layers: tuple[tf.Module, ...]

    @property
    def elementary_weights(self) -> tuple[tf.Variable, ...]:
        return tuple(v for layer in self.layers for v in layer.elementary_weights)

    @property
    def hyper_weights(self) -> tuple[tf.Variable, ...]:
        return tuple(v for layer in self.layers for v in layer.hyper_weights)

    @property
    def weights(self) -> tuple[tf.Variable, ...]:
        """All best-response parameters φ (elementary and hyper weights)."""
        return self.elementary_weights + self.hyper_weights

    @property
    def dtype(self) -> tf.DType:
        """The precision of the weights (every layer's)."""
        return self.weights[0].dtype

    @property
    def members(self) -> int | None:
        """P for a population's model (built from a population's generator: every bias is
        [P, 1, out]), None for one run's (biases [out])."""
        bias = self.layers[0].b
        return None if bias.shape.rank == 1 else int(bias.shape[0])

    def squared_kernel_norm(self, hnet_input: tf.Tensor | None) -> tf.Tensor:
        """Σ_layers ‖W_layer(λ_i)‖²: the squared norm of every dense and convolution kernel at
        the weights each example is run with, [batch] (a scalar without hyper layers). Weight
        decay penalises it (``ClassificationTask``); biases and V, C are not decayed."""
        norms = [layer.squared_kernel_norm(hnet_input) for layer in self.layers]
        return sum(norms[1:], norms[0])  # not add_n: plain layers give scalars, hyper [batch]


class ToyHyperNet(HyperModel):
    """The design document's deep ReLU net for x²: a linear input layer, ``depth`` hidden layers
    of ``width`` units with an activation, and a linear output, every layer a HyperDense.
    ``hyper=False`` builds the same network from plain ``Dense`` layers (no hyper weights) for
    training at fixed hyperparameters."""

    def __init__(
        self,
        n_hyper: int,
        generator: tf.random.Generator,
        depth: int = 3,
        width: int = 4,
        per_unit: bool = True,
        hyper_init: str = "paper",
        activation: str = "relu",
        hyper: bool = True,
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str = "toy_hypernet",
    ):
        super().__init__(name=name)
        for param, value in (("depth", depth), ("width", width), ("n_hyper", n_hyper)):
            if not is_positive_int(value):
                raise ValueError(f"{param}={value!r} must be a positive integer")
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.activation = ACTIVATIONS[activation]

        def dense(n_in: int, n_out: int, layer_name: str) -> HyperDense | Dense:
            if not hyper:
                return Dense(n_in, n_out, generator, dtype, name=layer_name)
            return HyperDense(
                n_in, n_out, n_hyper, generator, per_unit, hyper_init, dtype, name=layer_name
            )

        self.layers = (
            dense(1, width, "dense_input"),
            *(dense(width, width, f"hidden_{i}") for i in range(depth)),
            dense(width, 1, "dense_output"),
        )

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor | None = None) -> tf.Tensor:
        """x [batch, 1], hnet_input [batch, H] (None without hyper weights) → [batch, 1] (a
        population's with a leading P axis). The layers run feature-major, [units, batch]: at
        a width of 4 units that is the layout XLA:CPU vectorises (over the batch)."""
        hnet_t = None if hnet_input is None else tf.linalg.matrix_transpose(hnet_input)
        h = self.layers[0].feature_major(tf.linalg.matrix_transpose(x), hnet_t)
        for layer in self.layers[1:-1]:
            h = self.activation(layer.feature_major(h, hnet_t))
        return tf.linalg.matrix_transpose(self.layers[-1].feature_major(h, hnet_t))


def _check_sizes(**sizes: object) -> None:
    for param, value in sizes.items():
        values = value if isinstance(value, tuple) else (value,)
        if not values or any(not is_positive_int(v) for v in values):
            raise ValueError(f"{param}={value!r} must be a positive integer (or a tuple of them)")


class _Classifier(HyperModel):
    """Shared forward pass of the image classifiers: blocks, each followed by per-example
    dropout at its own rate, then a linear output. ``hyper=False`` builds the same network
    from plain layers (no hyper weights) for the fixed-hyperparameter baselines."""

    hyper: bool
    n_hyper: int

    @property
    def n_dropout(self) -> int:
        """How many dropout rates ``__call__`` expects: one per hidden block."""
        return len(self.layers) - 1

    def _dense(
        self, n_in: int, n_out: int, generator: tf.random.Generator, dtype: tf.DType, name: str
    ) -> HyperDense | Dense:
        if self.hyper:
            return HyperDense(n_in, n_out, self.n_hyper, generator, dtype=dtype, name=name)
        return Dense(n_in, n_out, generator, dtype, name=name)

    def _block(self, i: int, h: tf.Tensor, hnet_input: tf.Tensor | None) -> tf.Tensor:
        raise NotImplementedError

    def __call__(
        self,
        x: tf.Tensor,
        hnet_input: tf.Tensor | None = None,
        dropout: tf.Tensor | None = None,
        generator: tf.random.Generator | None = None,
    ) -> tf.Tensor:
        """Images x [batch, height, width, channels] → logits [batch, classes].

        ``hnet_input`` [batch, H] is read by hyper layers (ignored when ``hyper=False``);
        ``dropout`` [batch, n_dropout] gives each example its own rate per block (None: no
        dropout, as for the validation loss) and then needs ``generator``.
        """
        if self.hyper and hnet_input is None:
            raise ValueError("hnet_input=None is not allowed for a hyper model: pass [batch, H]")
        if dropout is not None and generator is None:
            raise ValueError(
                "generator=None is not allowed with dropout: pass a tf.random.Generator"
            )
        h, members = x, self.members
        if members is not None and len(x.shape) == 4:
            h = tf.broadcast_to(x, [members, *x.shape])  # one batch, every member
        for i in range(self.n_dropout):
            h = self._block(i, h, hnet_input)
            if dropout is not None:
                h = per_example_dropout(h, dropout[..., i], generator)
        return self.layers[-1](self._flatten(h), hnet_input)

    def _flatten(self, h: tf.Tensor) -> tf.Tensor:
        """Activations [batch, ...] → [batch, features]; a population's [P, batch, ...] →
        [P, batch, features]."""
        lead = 1 if self.members is None else 2
        return tf.reshape(h, tf.concat([tf.shape(h)[:lead], [-1]], 0))


class HyperMLP(_Classifier):
    """Flatten → ``hidden`` ReLU layers (each followed by dropout) → linear output."""

    def __init__(
        self,
        n_hyper: int,
        generator: tf.random.Generator,
        input_shape: tuple[int, ...] = (8, 8, 1),
        hidden: tuple[int, ...] = (128, 128),
        n_classes: int = 10,
        hyper: bool = True,
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str = "hyper_mlp",
    ):
        super().__init__(name=name)
        _check_sizes(n_hyper=n_hyper, input_shape=tuple(input_shape), hidden=tuple(hidden))
        _check_sizes(n_classes=n_classes)
        self.hyper, self.n_hyper = hyper, n_hyper
        sizes = [math.prod(input_shape), *hidden, n_classes]
        self.layers = tuple(
            self._dense(n_in, n_out, generator, dtype, f"dense_{i}")
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        )

    def _block(self, i: int, h: tf.Tensor, hnet_input: tf.Tensor | None) -> tf.Tensor:
        if i == 0:
            h = self._flatten(h)
        return tf.nn.relu(self.layers[i](h, hnet_input))


class HyperCNN(_Classifier):
    """``channels`` blocks of 3×3 conv, ReLU and 2×2 max-pooling, a ReLU dense layer of
    ``dense_units``, and a linear output; every block is followed by dropout."""

    def __init__(
        self,
        n_hyper: int,
        generator: tf.random.Generator,
        input_shape: tuple[int, int, int] = (8, 8, 1),
        channels: tuple[int, ...] = (16, 32),
        dense_units: int = 64,
        n_classes: int = 10,
        hyper: bool = True,
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str = "hyper_cnn",
    ):
        super().__init__(name=name)
        _check_sizes(n_hyper=n_hyper, channels=tuple(channels), dense_units=dense_units)
        _check_sizes(n_classes=n_classes)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape={input_shape!r} must be (height, width, channels)")
        _check_sizes(input_shape=tuple(input_shape))
        self.hyper, self.n_hyper = hyper, n_hyper
        height, width, c_in = input_shape
        convs = []
        for i, c_out in enumerate(channels):
            if self.hyper:
                conv = HyperConv2D(
                    c_in, c_out, 3, n_hyper, generator, dtype=dtype, name=f"conv_{i}"
                )
            else:
                conv = Conv2D(c_in, c_out, 3, generator, dtype=dtype, name=f"conv_{i}")
            convs.append(conv)
            c_in, height, width = c_out, -(-height // 2), -(-width // 2)
        self.n_conv = len(convs)
        self.layers = (
            *convs,
            self._dense(height * width * c_in, dense_units, generator, dtype, "dense_0"),
            self._dense(dense_units, n_classes, generator, dtype, "dense_out"),
        )

    def _block(self, i: int, h: tf.Tensor, hnet_input: tf.Tensor | None) -> tf.Tensor:
        if i < self.n_conv:
            h = tf.nn.relu(self.layers[i](h, hnet_input))
            return max_pool_2x2(h)
        return tf.nn.relu(self.layers[i](self._flatten(h), hnet_input))
