"""The JAX toy (the benchmark's JAX row) takes the steps of the TensorFlow STN: from the same
weights and the same random draws, one weight step and one hyperparameter step land on the same
values to 1e-9 (rounding: Adam divides by sqrt(v) + 1e-7, so the tiny gradients of
zero-initialised hyper weights magnify the order of additions), for the design document's
variant, the paper's, and the default one."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from stn.experiments.toy import variant
from stn.method.hyperparameters import DEFAULT_DTYPE as DTYPE

jax_toy = pytest.importorskip("stn.experiments.jax_toy", exc_type=ImportError)
jnp = pytest.importorskip("jax.numpy")
ravel_pytree = pytest.importorskip("jax.flatten_util").ravel_pytree

VARIANTS = ["per-layer scale", "per-unit scale", "default"]


def jax_state(toy, stn):
    """The JAX toy's state holding the TensorFlow STN's weights and hyperparameters."""
    layers = [
        {
            k: jnp.asarray(getattr(layer, k).numpy())
            for k in ("w", "b", "w_hyper", "b_hyper", "v", "c")
        }
        for layer in stn.model.layers
    ]
    state = toy.init(0)
    state["phi"] = ravel_pytree(layers)[0]
    state["u"] = jnp.asarray(stn.hyperparameters.unconstrained.numpy()[0])
    state["s"] = jnp.asarray(stn.hyperparameters.scale.numpy()[0])
    return state


def next_draws(stn, *shapes):
    """What the STN's generator draws next: (low, high) for a uniform, None for a normal."""
    state = stn.generator.state.numpy()  # a copy: the STN's own stream does not move
    generator = tf.random.Generator.from_state(state, stn.generator.algorithm)
    n = stn.task.batch_size
    return [
        jnp.asarray(
            generator.normal([n, 1], dtype=DTYPE)
            if bounds is None
            else generator.uniform([n, 1], *bounds, dtype=DTYPE)
        )
        for bounds in shapes
    ]


@pytest.mark.parametrize("name", VARIANTS)
def test_a_weight_step_and_a_hyper_step_match_tensorflows(name):
    exp = dataclasses.replace(variant(name), seed=4)
    stn = exp.build().stn
    toy = jax_toy.JaxToy(dataclasses.replace(exp, max_cycles=10), chunk=10)
    state = jax_state(toy, stn)

    unit, noise = next_draws(stn, (-1.0, 1.0), None)
    stn.weight_step()
    state, _ = toy.weight_step(state, noise, unit)
    np.testing.assert_allclose(state["phi"], jax_state(toy, stn)["phi"], rtol=0, atol=1e-9)

    v = exp.validation_range
    x, noise = next_draws(stn, (-v, v), None)
    stn.hyper_step()
    state, _ = toy.hyper_step(state, noise, x)
    expected = jax_state(toy, stn)
    for key in ("u", "s"):
        np.testing.assert_allclose(state[key], expected[key], rtol=0, atol=1e-9)


def test_the_distance_is_the_tasks():
    exp = variant("default", seed=2)
    stn = exp.build().stn
    toy = jax_toy.JaxToy(exp, chunk=10)
    state = jax_state(toy, stn)
    metrics, _ = stn.evaluate()
    exact = jnp.zeros_like(toy.grid)
    distance = jnp.max(jnp.abs(jnp.square(toy.grid) - toy.model(state["phi"], toy.grid, exact)))
    np.testing.assert_allclose(distance, metrics["distance"].numpy(), rtol=0, atol=1e-9)


def test_a_run_learns_the_toy_and_a_seed_fixes_it():
    toy = jax_toy.JaxToy(variant("default", seed=0), chunk=500)
    record = toy.run(0, 1500)
    assert record.shape == (1500, 5)
    assert record[-1, 0] < 0.5 * record[0, 0]  # the distance to x² shrinks
    np.testing.assert_array_equal(toy.run(0, 1500), record)


@pytest.mark.parametrize("name, parameter", [("delta-stn", "weight_step"), ("centered", None)])
def test_variants_outside_the_jax_toy_are_refused_by_name(name, parameter):
    if parameter is None:
        jax_toy.JaxToy(variant(name), chunk=10)
        return
    with pytest.raises(ValueError, match=parameter):
        jax_toy.JaxToy(variant(name), chunk=10)
    with pytest.raises(ValueError, match="chunk=0"):
        jax_toy.JaxToy(variant("default"), chunk=0)
