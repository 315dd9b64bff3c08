"""The design document's original eager training loop, kept as the speed baseline.

This is the design document's code, in its structure: per-layer ``tf.function`` calls, a shared
perturbation variable re-drawn before each step, a Python loop that applies the Keras optimizers
eagerly and pulls every loss and prediction back to NumPy. ``stn.training`` is the real
implementation; this module exists only so the benchmark can time the original in the same run.
"""

from __future__ import annotations

import math
import time

import numpy as np
import tensorflow as tf

DTYPE = tf.float64


@tf.function
def _unc_batch(unc, scale, perturbation, batch_size):
    repeated = tf.reshape(tf.repeat(unc, repeats=[batch_size]), (batch_size, 1))
    return repeated + tf.math.softplus(scale) * perturbation


class _DesignDense(tf.Module):
    def __init__(self, n_in, n_out, hp, with_relu, name):
        super().__init__(name=name)
        self.hp, self.with_relu = hp, with_relu
        stdv = 1.0 / math.sqrt(n_in)

        def uniform(shape):
            return tf.Variable(tf.random.uniform(shape, -stdv, stdv, dtype=DTYPE))

        self.w, self.hw = uniform([n_in, n_out]), uniform([n_in, n_out])
        self.b, self.hb = uniform([n_out]), uniform([n_out])
        self.kw = tf.Variable(tf.random.normal([1, 1], stddev=0.1, dtype=DTYPE))
        self.kb = tf.Variable(tf.random.normal([1, 1], stddev=0.1, dtype=DTYPE))

    @tf.function
    def __call__(self, x):
        unc, scale, perturbation, batch_size = self.hp
        h = _unc_batch(unc, scale, perturbation, batch_size)
        y = tf.matmul(x, self.w) + self.b
        y += tf.matmul(h, self.kw) * tf.matmul(x, self.hw) + tf.matmul(h, self.kb) * self.hb
        return tf.nn.relu(y) if self.with_relu else y


class _DesignModel(tf.Module):
    def __init__(self, hp, depth=3, width=4):
        super().__init__(name="design_model")
        self.layers = [_DesignDense(1, width, hp, False, "dense_input")]
        self.layers += [_DesignDense(width, width, hp, True, f"hidden_{i}") for i in range(depth)]
        self.layers += [_DesignDense(width, 1, hp, False, "dense_output")]

    @tf.function
    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def design_doc_loop(cycles: int, seed: int = 39, batch_size: int = 100) -> float:
    """Run the design document's loop for ``cycles`` cycles (2 + 2 steps, evaluation every
    cycle); return the seconds per cycle, excluding the warm-up steps."""
    tf.random.set_seed(seed)
    lo, hi = tf.constant(0.01, DTYPE), tf.constant(10.0, DTYPE)
    unc = tf.Variable(math.log(0.49 / 9.5), dtype=DTYPE)  # s_logit(0.5, 0.01, 10)
    scale = tf.Variable(math.log(math.expm1(0.5)), dtype=DTYPE)
    gen = tf.random.Generator.from_seed(42)
    perturbation = tf.Variable(gen.normal((batch_size, 1), dtype=DTYPE))
    model = _DesignModel((unc, scale, perturbation, batch_size))
    weights = [v for layer in model.layers for v in (layer.w, layer.hw, layer.kw)]
    weights += [v for layer in model.layers for v in (layer.b, layer.hb, layer.kb)]
    opt_w = tf.keras.optimizers.Adam(0.01)
    opt_h, opt_s = tf.keras.optimizers.Adam(0.003), tf.keras.optimizers.Adam(0.003)
    tau = tf.constant(0.001, DTYPE)

    def entropy():
        return tf.math.log(tf.math.softplus(scale) * math.sqrt(2 * math.pi * math.e))

    def weights_step():
        perturbation.assign(gen.normal((batch_size, 1), dtype=DTYPE))
        x_range = (hi - lo) * tf.math.sigmoid(_unc_batch(unc, scale, perturbation, batch_size))
        x = (x_range + lo) * gen.uniform((batch_size, 1), -1, 1, dtype=DTYPE)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(weights)
            loss = tf.keras.losses.MSE(x**2, model(x))
        opt_w.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
        return np.sum(loss.numpy())

    def hyper_step():
        perturbation.assign(gen.normal((batch_size, 1), dtype=DTYPE))
        x = gen.uniform((batch_size, 1), -2.0, 2.0, dtype=DTYPE)
        for var, opt in ((unc, opt_h), (scale, opt_s)):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(var)
                loss = tf.keras.losses.MSE(x**2, model(x)) - tau * entropy()
            opt.apply_gradients([(tape.gradient(loss, var), var)])
        return np.sum(loss.numpy())

    x_eval = tf.constant(np.linspace(-2.0, 2.0, 100)[:, None], DTYPE)
    y_eval = x_eval**2
    for _ in range(5):
        weights_step()
    start = time.perf_counter()
    trajectory = []
    for _ in range(cycles):
        for _ in range(2):
            weights_step()
        for _ in range(2):
            hyper_step()
        prediction = model(x_eval)
        trajectory.append(float(np.max(np.abs(y_eval.numpy() - prediction.numpy()))))
    return (time.perf_counter() - start) / cycles
