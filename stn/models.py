"""Hypermodels: networks built from hyper layers, with their variables grouped by role."""

from __future__ import annotations

import tensorflow as tf

from stn.layers import HyperDense, check_choice

ACTIVATIONS = {"relu": tf.nn.relu, "leaky_relu": tf.nn.leaky_relu, "tanh": tf.math.tanh}


class HyperModel(tf.Module):
    """Base class: a stack of hyper layers whose weights are grouped by role."""

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


class ToyHyperNet(HyperModel):
    """The design document's deep ReLU net for x²: a linear input layer, ``depth`` hidden layers
    of ``width`` units with an activation, and a linear output, every layer a HyperDense."""

    def __init__(
        self,
        n_hyper: int,
        generator: tf.random.Generator,
        depth: int = 3,
        width: int = 4,
        per_unit: bool = True,
        hyper_init: str = "paper",
        activation: str = "relu",
        name: str = "toy_hypernet",
    ):
        super().__init__(name=name)
        for param, value in (("depth", depth), ("width", width), ("n_hyper", n_hyper)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{param}={value!r} must be a positive integer")
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.activation = ACTIVATIONS[activation]

        def dense(n_in: int, n_out: int, layer_name: str) -> HyperDense:
            return HyperDense(
                n_in, n_out, n_hyper, generator, per_unit, hyper_init, name=layer_name
            )

        self.layers = (
            dense(1, width, "dense_input"),
            *(dense(width, width, f"hidden_{i}") for i in range(depth)),
            dense(width, 1, "dense_output"),
        )

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor) -> tf.Tensor:
        """x [batch, 1], hnet_input [batch, H] → prediction [batch, 1]."""
        h = self.layers[0](x, hnet_input)
        for layer in self.layers[1:-1]:
            h = self.activation(layer(h, hnet_input))
        return self.layers[-1](h, hnet_input)
