import math

import numpy as np
import pytest
import tensorflow as tf

from stn.method.hyperparameters import (
    DEFAULT_DTYPE as DTYPE,
)
from stn.method.hyperparameters import (
    Hyperparameters,
    HyperparameterSpec,
    Transform,
    inverse_softplus,
)

SPACES = [
    dict(lower=0.01, upper=10.0),  # scaled sigmoid
    dict(lower=0.0),  # lower softplus
    dict(upper=1.0),  # upper softplus
    dict(),  # identity
    dict(transform="exp"),
]


@pytest.mark.parametrize("space", SPACES)
def test_round_trip_and_bounds(space):
    initial = 0.5
    spec = HyperparameterSpec("h", initial, **space)
    t = spec.space
    u = t.inverse(initial)
    assert float(t.forward(tf.constant(u, DTYPE))) == pytest.approx(initial, rel=1e-12)
    wide = tf.constant(np.linspace(-30, 30, 601), DTYPE)
    values = t.forward(wide).numpy()
    lo, hi = space.get("lower", -math.inf), space.get("upper", math.inf)
    assert np.all(values >= lo) and np.all(values <= hi)


@pytest.mark.parametrize("space", SPACES)
def test_finite_gradients(space):
    t = HyperparameterSpec("h", 0.5, **space).space
    u = tf.Variable(np.linspace(-20, 20, 41), dtype=DTYPE)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(t.forward(u))
    grad = tape.gradient(y, u).numpy()
    assert np.all(np.isfinite(grad))
    assert np.all(grad >= 0) or np.all(grad <= 0)  # monotone, so invertible


def test_scale_init_is_inverse_softplus():
    hp = Hyperparameters([HyperparameterSpec("a", 0.3, 0.0, 1.0, scale=0.7)])
    assert hp.stddev().numpy()[0] == pytest.approx(0.7)
    assert inverse_softplus(50.0) == pytest.approx(50.0)


def test_exact_mode_and_per_example_draws():
    specs = [HyperparameterSpec("a", 0.5, 0.01, 10.0), HyperparameterSpec("b", 2.0, lower=0.0)]
    hp = Hyperparameters(specs)
    exact = hp.constrain(hp.exact(7)).numpy()
    assert exact.shape == (7, 2)
    np.testing.assert_allclose(exact, np.tile([0.5, 2.0], (7, 1)), rtol=1e-12)
    draws = hp.sample(1000, tf.random.Generator.from_seed(3)).numpy()
    assert draws.shape == (1000, 2)
    assert len(np.unique(draws[:, 0])) == 1000  # one draw per example
    std = hp.stddev().numpy()
    np.testing.assert_allclose(draws.std(axis=0), std, rtol=0.1)
    np.testing.assert_allclose(draws.mean(axis=0), hp.unconstrained.numpy(), atol=0.1)


def test_entropy_formula():
    hp = Hyperparameters(
        [HyperparameterSpec("a", 0.5, 0, 1, scale=0.2), HyperparameterSpec("b", 1.0, scale=3.0)]
    )
    expected = sum(math.log(s * math.sqrt(2 * math.pi * math.e)) for s in (0.2, 3.0))
    assert float(hp.entropy()) == pytest.approx(expected)


def test_discrete_floors_the_value():
    hp = Hyperparameters([HyperparameterSpec("holes", 2.7, 0.0, 8.0, discrete=True)])
    assert float(hp.values()[0]) == 2.0


def test_custom_transform_instance():
    class Cube(Transform):
        def forward(self, u):
            return u**3

        def inverse(self, v):
            return math.copysign(abs(v) ** (1 / 3), v)

    hp = Hyperparameters([HyperparameterSpec("c", 8.0, transform=Cube())])
    assert float(hp.values()[0]) == pytest.approx(8.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(initial=0.01, lower=0.01, upper=10.0), r"initial=0.01 .*strictly inside"),
        (dict(initial=11.0, lower=0.01, upper=10.0), r"initial=11.0"),
        (dict(initial=0.0, lower=0.0), r"initial=0.0 .*strictly above 0.0"),
        (dict(initial=0.5, lower=1.0, upper=1.0), r"lower=1.0 must be below upper=1.0"),
        (dict(initial=0.5, lower=2.0, upper=1.0), r"lower=2.0 must be below upper=1.0"),
        (dict(initial=0.5, scale=0.0), r"scale=0.0 must be a positive"),
        (dict(initial=0.5, scale=-1.0), r"scale=-1.0 must be a positive"),
        (dict(initial=0.5, transform="logistic"), r"transform='logistic' is unknown; allowed"),
        (dict(initial=0.5, transform="sigmoid", lower=0.0), r"needs both bounds"),
        (dict(initial=float("nan")), r"initial=nan must be a finite number"),
        (dict(initial=0.5, transform="identity", lower=0.0), r"takes no bounds"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HyperparameterSpec("h", **kwargs)


def test_container_bad_input():
    with pytest.raises(ValueError, match="specs=\\[\\]"):
        Hyperparameters([])
    spec = HyperparameterSpec("h", 0.5)
    with pytest.raises(ValueError, match="duplicate names"):
        Hyperparameters([spec, spec])
