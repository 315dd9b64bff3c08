"""Hyper layers: weights that are affine functions of the hyperparameters.

The paper's structured best-response (MacKay et al. 2019, eq. 8):

    W(λ) = W_elem + (V λ) ⊙_row W_hyper        b(λ) = b_elem + (C λ) ⊙ b_hyper

computed without materialising W(λ) per example: x·W(λ) = x·W_elem + (λV) ⊙ (x·W_hyper).
"""

from __future__ import annotations

import math

import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE
from stn.method.population import draw_shape
from stn.util.checks import check_choice, is_positive_int

#: Standard deviation of V and C at initialisation, by name: the official code (``paper``),
#: the design document (``design``), and Delta-STN's zero initialisation (``zero``).
HYPER_INIT_STD = {"paper": 0.01, "design": 0.1, "zero": 0.0}


def _uniform(
    generator: tf.random.Generator, shape: list[int], fan_in: int, name: str, dtype: tf.DType
) -> tf.Variable:
    """The official initialisation of W and b: U(±1/sqrt(fan_in)). A population's generator
    (:class:`stn.method.population.PopulationGenerator`) draws [P, *shape]; its biases get an
    axis for the batch, [P, 1, out], so they broadcast over activations [P, batch, out]."""
    bound = 1.0 / math.sqrt(fan_in)
    value = generator.uniform(shape, -bound, bound, dtype)
    if len(shape) == 1 and value.shape.rank == 2:
        value = value[:, tf.newaxis, :]
    return tf.Variable(value, name=name)


class HyperLayer(tf.Module):
    """Base of the hyper layers: elementary weights W, b and hyper weights W_hyper, b_hyper, V, C,
    initialised as in the official code (W, b ~ U(±1/sqrt(fan_in)); V, C ~ N(0, std²))."""

    def _init_weights(
        self,
        generator: tf.random.Generator,
        w_shape: list[int],
        out: int,
        fan_in: int,
        n_hyper: int,
        per_unit: bool,
        hyper_init: str,
        dtype: tf.DType,
    ) -> None:
        """``per_unit=True`` gives V, C one scalar per output unit or channel ([H, out]);
        ``False`` is the design document's single scalar per layer ([H, 1])."""
        check_choice("hyper_init", hyper_init, tuple(HYPER_INIT_STD))
        std = HYPER_INIT_STD[hyper_init]
        scaled = out if per_unit else 1
        self.w = _uniform(generator, w_shape, fan_in, "w", dtype)
        self.b = _uniform(generator, [out], fan_in, "b", dtype)
        self.w_hyper = _uniform(generator, w_shape, fan_in, "w_hyper", dtype)
        self.b_hyper = _uniform(generator, [out], fan_in, "b_hyper", dtype)
        self.v = tf.Variable(generator.normal([n_hyper, scaled], stddev=std, dtype=dtype), name="v")
        self.c = tf.Variable(generator.normal([n_hyper, scaled], stddev=std, dtype=dtype), name="c")

    @property
    def elementary_weights(self) -> tuple[tf.Variable, ...]:
        """W_elem and b_elem: the weights of the network at λ = 0 (Delta-STN's general weights)."""
        return (self.w, self.b)

    @property
    def hyper_weights(self) -> tuple[tf.Variable, ...]:
        """W_hyper, b_hyper, V, C: the weights of the response to λ."""
        return (self.w_hyper, self.b_hyper, self.v, self.c)

    def squared_kernel_norm(self, hnet_input: tf.Tensor) -> tf.Tensor:
        """‖W(λ_i)‖², the squared norm of the kernel each example is run with, [batch].

        W(λ) = W_elem + W_hyper·diag(λV) scales the response's column (or filter) of every
        output unit by its own scalar s = λV, so with per-unit sums a = Σ W_elem², c = Σ
        W_elem·W_hyper and d = Σ W_hyper², ‖W(λ)‖² = Σ_units (a + 2sc + s²d): the weight-decay
        penalty without materialising a kernel per example. Biases are not decayed.
        """
        lead = len(hnet_input.shape) - 2  # 1 in a population: [P, batch, H]
        units = list(range(lead, self.w.shape.rank - 1))  # every axis but members and units
        a = tf.reduce_sum(tf.square(self.w), units)
        c = tf.reduce_sum(self.w * self.w_hyper, units)
        d = tf.reduce_sum(tf.square(self.w_hyper), units)
        if lead:  # [P, out] → [P, 1, out], to broadcast over each member's batch
            a, c, d = a[:, tf.newaxis], c[:, tf.newaxis], d[:, tf.newaxis]
        s = tf.matmul(hnet_input, self.v)  # [batch, out] (or [batch, 1]: one scalar per layer)
        return tf.reduce_sum(a + 2.0 * s * c + tf.square(s) * d, axis=-1)


class HyperDense(HyperLayer):
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
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._init_weights(
            generator, [in_features, out_features], out_features, in_features, n_hyper,
            per_unit, hyper_init, dtype,
        )  # fmt: skip

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor) -> tf.Tensor:
        """x [batch, in], hnet_input [batch, H] → [batch, out]."""
        elementary = tf.matmul(x, self.w) + self.b
        response = tf.matmul(hnet_input, self.v) * tf.matmul(x, self.w_hyper)
        response += tf.matmul(hnet_input, self.c) * self.b_hyper
        return elementary + response

    def feature_major(self, xt: tf.Tensor, hnet_t: tf.Tensor) -> tf.Tensor:
        """The same layer on transposed activations: xt [in, batch], hnet_t [H, batch] →
        [out, batch] (a population's with a leading P axis). For a layer a few units wide this
        puts the batch on the fast axis, which XLA:CPU vectorises (the toy's network)."""
        elementary = tf.matmul(self.w, xt, transpose_a=True) + _column(self.b)
        response = _scales(self.v, hnet_t) * tf.matmul(self.w_hyper, xt, transpose_a=True)
        response += _scales(self.c, hnet_t) * _column(self.b_hyper)
        return elementary + response


def _column(b: tf.Tensor) -> tf.Tensor:
    """A bias as a column: [out] → [out, 1]; a population's [P, 1, out] → [P, out, 1]."""
    return tf.linalg.matrix_transpose(b) if b.shape.rank > 1 else b[:, tf.newaxis]


def _scales(v: tf.Tensor, hnet_t: tf.Tensor) -> tf.Tensor:
    """(λV)ᵀ [scaled, batch] from V [H, scaled] and λᵀ [H, batch] (with a leading P axis in a
    population). With one hyperparameter the product has no sum, so it is a broadcast."""
    if v.shape[-2] == 1:
        return tf.linalg.matrix_transpose(v) * hnet_t
    return tf.matmul(v, hnet_t, transpose_a=True)


def _per_channel(s: tf.Tensor) -> tf.Tensor:
    """A value per output channel, [..., out] (λV or λC [batch, out], or a bias), given two axes
    to broadcast over the height and width of a convolution's output [..., height, width, out]
    (a population's bias [P, 1, out] thus broadcasts over its [P, batch, height, width, out])."""
    return s[..., tf.newaxis, tf.newaxis, :] if s.shape.rank > 1 else s


def conv2d(x: tf.Tensor, w: tf.Tensor, padding: str) -> tf.Tensor:
    """``tf.nn.conv2d(x, w, 1, padding)`` as one matrix product over x's patches (im2col).

    XLA:CPU runs a float64 convolution as a plain loop nest; as a matrix product it runs in Eigen,
    2-5× faster forward and backward on the hyper CNN's layers, with the same numbers to rounding.
    x [batch, height, width, in], w [k_h, k_w, in, out] → [batch, height', width', out]; a
    population's x [P, batch, ...] and w [P, k_h, k_w, in, out] give [P, batch, ...]."""
    k_h, k_w, c_in, c_out = w.shape[-4:]
    lead = w.shape.rank - 4  # 1 in a population
    if padding == "SAME":  # TensorFlow's: the odd pixel of an even kernel goes below and right
        spatial = [[(k_h - 1) // 2, k_h // 2], [(k_w - 1) // 2, k_w // 2], [0, 0]]
        x = tf.pad(x, [[0, 0]] * (x.shape.rank - 3) + spatial)
    height, width = x.shape[-3] - k_h + 1, x.shape[-2] - k_w + 1
    patches = tf.concat(
        [x[..., i : i + height, j : j + width, :] for i in range(k_h) for j in range(k_w)], -1
    )
    rows = tf.reshape(patches, tf.concat([tf.shape(x)[:lead], [-1, k_h * k_w * c_in]], 0))
    y = tf.matmul(rows, tf.reshape(w, [*w.shape[:lead], k_h * k_w * c_in, c_out]))
    return tf.reshape(y, tf.concat([tf.shape(patches)[:-1], [c_out]], 0))


def max_pool_2x2(x: tf.Tensor) -> tf.Tensor:
    """``tf.nn.max_pool2d(x, 2, 2, "SAME")`` as a maximum over a reshape, which XLA:CPU runs
    faster than its pooling window (and its gradient). An odd height or width is padded below or
    right with the dtype's lowest value, which no window's maximum takes, as SAME pooling does.
    Where a window's maximum is tied, its gradient is shared among the tied values (TensorFlow's
    pooling gives it all to one); elsewhere both agree exactly.
    x [..., height, width, channels] → [..., ⌈height/2⌉, ⌈width/2⌉, channels]."""
    height, width, channels = x.shape[-3:]
    odd = [[0, height % 2], [0, width % 2], [0, 0]]
    x = tf.pad(x, [[0, 0]] * (x.shape.rank - 3) + odd, constant_values=x.dtype.min)
    blocks = [(height + 1) // 2, 2, (width + 1) // 2, 2, channels]
    return tf.reduce_max(tf.reshape(x, tf.concat([tf.shape(x)[:-3], blocks], 0)), axis=[-4, -2])


class HyperConv2D(HyperLayer):
    """A 2-D convolution whose filters respond affinely to the hyperparameters, one scalar per
    output channel (the paper's CNN):

        y = conv(x, W_elem) + b + (λV) ⊙ conv(x, W_hyper) + (λC) ⊙ b_hyper,   V, C ∈ R^{H×out}

    Both convolutions run as one (filters concatenated along the output channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        n_hyper: int,
        generator: tf.random.Generator,
        per_unit: bool = True,
        hyper_init: str = "paper",
        padding: str = "SAME",
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str | None = None,
    ):
        super().__init__(name=name)
        check_choice("padding", padding, ("SAME", "VALID"))
        for param, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", kernel_size),
            ("n_hyper", n_hyper),
        ):
            if not is_positive_int(value):
                raise ValueError(f"{param}={value!r} must be a positive integer")
        self.padding = padding
        shape = [kernel_size, kernel_size, in_channels, out_channels]
        fan_in = kernel_size * kernel_size * in_channels
        self._init_weights(
            generator, shape, out_channels, fan_in, n_hyper, per_unit, hyper_init, dtype
        )

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor) -> tf.Tensor:
        """x [batch, height, width, in], hnet_input [batch, H] → [batch, height', width', out];
        a population's x [P, batch, ...] and hnet_input [P, batch, H] give [P, batch, ...]."""
        both = conv2d(x, tf.concat([self.w, self.w_hyper], -1), self.padding)
        elementary, hyper = tf.split(both, 2, axis=-1)
        response = _per_channel(tf.matmul(hnet_input, self.v)) * hyper
        response += _per_channel(tf.matmul(hnet_input, self.c)) * _per_channel(self.b_hyper)
        return elementary + _per_channel(self.b) + response


class PlainLayer(tf.Module):
    """A layer without hyper weights: its weights ``w`` and ``b`` are all elementary."""

    w: tf.Variable
    b: tf.Variable

    @property
    def elementary_weights(self) -> tuple[tf.Variable, ...]:
        return (self.w, self.b)

    @property
    def hyper_weights(self) -> tuple[tf.Variable, ...]:
        return ()

    def squared_kernel_norm(self, hnet_input: tf.Tensor | None = None) -> tf.Tensor:
        """‖W‖², the same for every example (a scalar, or a population's [P, 1], one per
        member, to broadcast over its batch); biases are not decayed."""
        if self.b.shape.rank == 1:
            return tf.reduce_sum(tf.square(self.w))
        return tf.reduce_sum(tf.square(self.w), list(range(1, self.w.shape.rank)))[:, tf.newaxis]


class Dense(PlainLayer):
    """A plain dense layer (no hyper weights) with HyperDense's interface and initialisation;
    ``hnet_input`` is accepted and ignored, so the same model runs with or without STN."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        generator: tf.random.Generator,
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.w = _uniform(generator, [in_features, out_features], in_features, "w", dtype)
        self.b = _uniform(generator, [out_features], in_features, "b", dtype)

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor | None = None) -> tf.Tensor:
        return tf.matmul(x, self.w) + self.b

    def feature_major(self, xt: tf.Tensor, hnet_t: tf.Tensor | None = None) -> tf.Tensor:
        """HyperDense's transposed form: xt [in, batch] → [out, batch]."""
        return tf.matmul(self.w, xt, transpose_a=True) + _column(self.b)


class Conv2D(PlainLayer):
    """A plain 2-D convolution (no hyper weights) with HyperConv2D's interface and init."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        generator: tf.random.Generator,
        padding: str = "SAME",
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str | None = None,
    ):
        super().__init__(name=name)
        check_choice("padding", padding, ("SAME", "VALID"))
        self.padding = padding
        fan_in = kernel_size * kernel_size * in_channels
        shape = [kernel_size, kernel_size, in_channels, out_channels]
        self.w = _uniform(generator, shape, fan_in, "w", dtype)
        self.b = _uniform(generator, [out_channels], fan_in, "b", dtype)

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor | None = None) -> tf.Tensor:
        return conv2d(x, self.w, self.padding) + _per_channel(self.b)


def per_example_dropout(x: tf.Tensor, rate: tf.Tensor, generator: tf.random.Generator) -> tf.Tensor:
    """Inverted dropout with one rate per example.

    ``rate`` has shape [batch] or [batch, 1] (or [P, batch] for a population's x [P, batch,
    ...]), values in [0, 1); each unit of example i is kept with probability 1 − rate_i and
    then scaled by 1/(1 − rate_i), so its expectation is x.
    """
    if rate.shape.rank == 2 and rate.shape[1] == 1:
        rate = rate[:, 0]
    rank = rate.shape.rank
    if rank not in (1, 2) or not rate.shape.is_compatible_with(x.shape[:rank]):
        raise ValueError(
            f"rate has shape {rate.shape} for x of shape {x.shape}; allowed: [batch], "
            "[batch, 1], or [P, batch] for a population"
        )
    shape = tf.concat([tf.shape(rate), tf.ones([x.shape.rank - rank], tf.int32)], 0)
    keep = 1.0 - tf.reshape(tf.cast(rate, x.dtype), shape)
    kept = generator.uniform(draw_shape(x, generator), dtype=x.dtype) < keep
    return tf.where(kept, x / keep, tf.zeros_like(x))
