"""Hyper layers: weights that are affine functions of the hyperparameters.

The paper's structured best-response (MacKay et al. 2019, eq. 8):

    W(λ) = W_elem + (V λ) ⊙_row W_hyper        b(λ) = b_elem + (C λ) ⊙ b_hyper

computed without materialising W(λ) per example: x·W(λ) = x·W_elem + (λV) ⊙ (x·W_hyper).
"""

from __future__ import annotations

import math

import tensorflow as tf

from stn.hyperparameters import DTYPE

#: Standard deviation of V and C at initialisation, by name: the official code (``paper``),
#: the design document (``design``), and Delta-STN's zero initialisation (``zero``).
HYPER_INIT_STD = {"paper": 0.01, "design": 0.1, "zero": 0.0}


def check_choice(name: str, value: object, allowed: tuple) -> None:
    """Raise a ValueError naming the parameter, its value and what is allowed."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")


class HyperDense(tf.Module):
    """A dense layer whose weights respond affinely to the hyperparameters.

    ``per_unit=True`` gives V, C one scalar per output unit (paper, shape [H, out]);
    ``per_unit=False`` is the design document's single scalar per layer (shape [H, 1]).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_hyper: int,
        generator: tf.random.Generator,
        per_unit: bool = True,
        hyper_init: str = "paper",
        name: str | None = None,
    ):
        super().__init__(name=name)
        check_choice("hyper_init", hyper_init, tuple(HYPER_INIT_STD))
        bound = 1.0 / math.sqrt(in_features)

        def uniform(shape: list[int], name: str) -> tf.Variable:
            return tf.Variable(generator.uniform(shape, -bound, bound, DTYPE), name=name)

        def normal(shape: list[int], name: str) -> tf.Variable:
            std = HYPER_INIT_STD[hyper_init]
            return tf.Variable(generator.normal(shape, stddev=std, dtype=DTYPE), name=name)

        scaled = out_features if per_unit else 1
        self.w = uniform([in_features, out_features], "w")
        self.b = uniform([out_features], "b")
        self.w_hyper = uniform([in_features, out_features], "w_hyper")
        self.b_hyper = uniform([out_features], "b_hyper")
        self.v = normal([n_hyper, scaled], "v")
        self.c = normal([n_hyper, scaled], "c")

    @property
    def elementary_weights(self) -> tuple[tf.Variable, ...]:
        """W_elem and b_elem: the weights of the network at λ = 0 (Delta-STN's general weights)."""
        return (self.w, self.b)

    @property
    def hyper_weights(self) -> tuple[tf.Variable, ...]:
        """W_hyper, b_hyper, V, C: the weights of the response to λ."""
        return (self.w_hyper, self.b_hyper, self.v, self.c)

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor) -> tf.Tensor:
        """x [batch, in], hnet_input [batch, H] → [batch, out]."""
        elementary = tf.matmul(x, self.w) + self.b
        response = tf.matmul(hnet_input, self.v) * tf.matmul(x, self.w_hyper)
        response += tf.matmul(hnet_input, self.c) * self.b_hyper
        return elementary + response
