"""The design document's original eager training loop, kept as the speed baseline.

This is the design document's code as it is written there: per-layer ``tf.function`` calls that
read a shared perturbation variable, ``tf.function`` helpers for the batch tensors, the data and
the entropy, a Python loop that applies the Keras optimizers eagerly (one tape for λ and another
for the scale) and pulls every loss and prediction back to NumPy. ``stn.training.loop`` is the real
implementation; this module exists only so the benchmark can time the original in the same run.
"""

from __future__ import annotations

import math
import time

import numpy as np
import tensorflow as tf

DTYPE = tf.float64

# The design document's ``@tf.function``, traced without AutoGraph. Its functions have no
# tensor-dependent control flow, so the traced graphs and the timed calls are the same; AutoGraph's
# conversion of these weakly bound methods failed intermittently inside the benchmark
# (``'TfMethodTarget' object has no attribute 'helpers'``), so it is left out.
_graph = tf.function(autograph=False)


class _Helpers(tf.Module):
    """The design document's module-level ``tf.function`` helpers, fresh for each run (a traced
    function keeps the variables of its first caller; the design document ran once per process)."""

    @_graph
    def make_unc_batch_tensor(self, unc_tensor, scale_tensor, perturbation, batch_size):
        unc_repeated = tf.reshape(tf.repeat(unc_tensor, repeats=[batch_size]), (batch_size, 1))
        return unc_repeated + tf.math.softplus(scale_tensor) * perturbation

    @_graph
    def s_sigmoid(self, unc_hyperparam, min_val, max_val):
        return (max_val - min_val) * tf.math.sigmoid(unc_hyperparam) + min_val

    @_graph
    def make_con_batch_tensor(self, unc, scale, perturbation, batch_size, min_val, max_val):
        unc_batch = self.make_unc_batch_tensor(unc, scale, perturbation, batch_size)
        return self.s_sigmoid(unc_batch, min_val, max_val)

    @_graph
    def entropy_term(self, hscale):
        scale = tf.math.softplus(hscale)
        return tf.math.log(scale * tf.math.sqrt(tf.constant(2.0 * math.pi * math.e, dtype=DTYPE)))

    @_graph
    def make_training_data_tensor(self, unc, scale, perturbation, batch_size, lo, hi, gen):
        x_range = self.make_con_batch_tensor(unc, scale, perturbation, batch_size, lo, hi)
        x_sample = gen.uniform(shape=(batch_size, 1), minval=-1, maxval=1, dtype=DTYPE)
        return tf.multiply(x_range, x_sample)


class _DesignDense(tf.Module):
    def __init__(self, n_in, n_out, helpers, unc, scale, perturbation, batch_size, with_relu, name):
        super().__init__(name=name)
        self.helpers = helpers
        self.unc_tensor, self.scale_tensor = unc, scale
        self.perturbation, self.batch_size, self.with_relu = perturbation, batch_size, with_relu
        stdv = 1.0 / math.sqrt(n_in)

        def uniform(shape):
            return tf.Variable(tf.random.uniform(shape, -stdv, stdv, dtype=DTYPE))

        self.w, self.hw = uniform([n_in, n_out]), uniform([n_in, n_out])
        self.b, self.hb = uniform([n_out]), uniform([n_out])
        self.kw = tf.Variable(tf.random.normal([1, 1], stddev=0.1, dtype=DTYPE))
        self.kb = tf.Variable(tf.random.normal([1, 1], stddev=0.1, dtype=DTYPE))

    @_graph
    def __call__(self, x, training=True):
        hyper_unc_batch = self.helpers.make_unc_batch_tensor(
            self.unc_tensor, self.scale_tensor, self.perturbation, self.batch_size
        )
        oy = tf.matmul(x, self.w) + self.b
        hw = tf.linalg.matmul(hyper_unc_batch, self.kw) * tf.matmul(x, self.hw)
        hb = tf.linalg.matmul(hyper_unc_batch, self.kb) * self.hb
        y = oy + hw + hb
        return tf.nn.relu(y) if self.with_relu else y


class _DesignModel(tf.Module):
    def __init__(self, helpers, unc, scale, perturbation, batch_size, depth=3, width=4):
        super().__init__(name="HyperModel")
        self.perturbation, self.batch_size = perturbation, batch_size
        args = (helpers, unc, scale, perturbation, batch_size)
        self.layers = [_DesignDense(1, width, *args, False, "dense_input")]
        for i in range(depth):
            self.layers.append(_DesignDense(width, width, *args, True, f"hidden_{i}"))
        self.layers += [_DesignDense(width, 1, *args, False, "dense_output")]

    @_graph
    def __call__(self, x, training=True):
        next_input = x
        for layer in self.layers:
            next_input = layer(next_input, training)
        return next_input

    @_graph
    def update_perturbations(self, gen):
        self.perturbation.assign(gen.normal(shape=(self.batch_size, 1), dtype=DTYPE))
        return self.perturbation


class _DesignLoop:
    """The design document's state and its two steps: weights on perturbed λ, then λ and its
    scale, each with its own Keras optimizer, every loss pulled back to NumPy."""

    def __init__(self, seed: int, batch_size: int):
        tf.random.set_seed(seed)
        self.batch_size = batch_size
        self.min_val, self.max_val = tf.constant(0.01, DTYPE), tf.constant(10, DTYPE)
        self.unc_x_range = tf.Variable(math.log(0.49 / 9.5), dtype=DTYPE)  # s_logit(0.5, .01, 10)
        self.scale_x_range = tf.Variable(math.log(math.expm1(0.5)), dtype=DTYPE)  # inv_softplus
        self.gen = tf.random.Generator.from_seed(42)
        self.perturbation = tf.Variable(self.gen.normal(shape=(batch_size, 1), dtype=DTYPE))
        self.fn = _Helpers()
        self.model = _DesignModel(
            self.fn, self.unc_x_range, self.scale_x_range, self.perturbation, batch_size
        )
        hyper = {id(self.unc_x_range), id(self.scale_x_range), id(self.perturbation)}
        self.weights = [v for v in self.model.variables if id(v) not in hyper]
        self.opt_weights = tf.keras.optimizers.Adam(learning_rate=0.01)
        self.opt_hyper = tf.keras.optimizers.Adam(learning_rate=0.003)
        self.opt_scale = tf.keras.optimizers.Adam(learning_rate=0.003)
        self.entropy_coefficient = tf.constant(0.001, dtype=DTYPE)
        self.x_eval = tf.constant(np.expand_dims(np.linspace(-2.0, 2.0, 100), 1), dtype=DTYPE)
        self.y_eval = self.x_eval ** tf.constant(2.0, dtype=DTYPE)
        self.trajectory: list[tuple[float, ...]] = []

    def weights_training_step(self) -> float:
        self.model.update_perturbations(self.gen)
        x_train = self.fn.make_training_data_tensor(
            self.unc_x_range,
            self.scale_x_range,
            self.perturbation,
            self.batch_size,
            self.min_val,
            self.max_val,
            self.gen,
        )
        y_train = x_train ** tf.constant(2.0, dtype=DTYPE)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.weights)
            loss = tf.keras.losses.MSE(y_train, self.model(x_train, training=True))
        grads = tape.gradient(loss, self.weights)
        self.opt_weights.apply_gradients(zip(grads, self.weights, strict=True))
        return np.sum(loss.numpy())

    def hyperparameters_training_step(self) -> float:
        self.model.update_perturbations(self.gen)
        shape = (self.batch_size, 1)
        x_train = self.gen.uniform(shape=shape, minval=-2.0, maxval=2.0, dtype=DTYPE)
        y_train = x_train ** tf.constant(2.0, dtype=DTYPE)
        for var, opt in ((self.unc_x_range, self.opt_hyper), (self.scale_x_range, self.opt_scale)):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(var)
                y_pred = self.model(x_train, training=True)
                loss = tf.keras.losses.MSE(y_train, y_pred) - (
                    self.entropy_coefficient * self.fn.entropy_term(self.scale_x_range)
                )
            opt.apply_gradients(zip([tape.gradient(loss, var)], [var], strict=True))
        return np.sum(loss.numpy())

    def cycle(self) -> None:
        """Two weight steps, two hyper steps, an evaluation pulled back to NumPy."""
        for _ in range(2):
            wloss = self.weights_training_step()
        for _ in range(2):
            hloss = self.hyperparameters_training_step()
        y_pred = self.model(self.x_eval, training=False)
        dist = float(np.max(np.abs(self.y_eval.numpy() - y_pred.numpy())))
        x_range = self.fn.s_sigmoid(self.unc_x_range, self.min_val, self.max_val).numpy()
        scale = tf.math.softplus(self.scale_x_range).numpy()
        self.trajectory.append((x_range, scale, wloss, hloss, dist))


def design_doc_loop(cycles: int, seed: int = 39, batch_size: int = 100) -> float:
    """Run the design document's loop for ``cycles`` cycles (5 warm-up steps, then 2 weight and
    2 hyper steps and an evaluation per cycle); return the seconds per cycle after warm-up."""
    loop = _DesignLoop(seed, batch_size)
    for _ in range(5):
        loop.weights_training_step()
    start = time.perf_counter()
    for _ in range(cycles):
        loop.cycle()
    return (time.perf_counter() - start) / cycles
