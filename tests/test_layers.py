import numpy as np
import pytest
import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE as DTYPE
from stn.method.layers import Dense, HyperDense
from stn.method.models import ToyHyperNet
from stn.method.population import PopulationGenerator


def make_layer(per_unit=True, hyper_init="paper", n_hyper=2):
    return HyperDense(3, 5, n_hyper, tf.random.Generator.from_seed(0), per_unit, hyper_init)


@pytest.mark.parametrize("per_unit", [True, False])
def test_response_matches_formula(per_unit):
    layer = make_layer(per_unit)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), DTYPE)
    lam = tf.constant(np.random.default_rng(1).normal(size=(4, 2)), DTYPE)
    w, b, wh, bh, v, c = (t.numpy() for t in (layer.w, layer.b, *layer.hyper_weights))
    assert v.shape == ((2, 5) if per_unit else (2, 1))
    expected = []
    for i in range(4):  # the weights W(λ), b(λ) of each example, formed explicitly
        w_lam = w + (lam.numpy()[i] @ v)[np.newaxis, :] * wh
        b_lam = b + (lam.numpy()[i] @ c) * bh
        expected.append(x.numpy()[i] @ w_lam + b_lam)
    np.testing.assert_allclose(layer(x, lam).numpy(), np.array(expected), rtol=1e-12)


@pytest.mark.parametrize("n_hyper", [1, 2])
@pytest.mark.parametrize("per_unit", [True, False])
def test_the_feature_major_form_is_the_layer_transposed(per_unit, n_hyper):
    """What the toy network runs: the same numbers, to rounding, for one run and a population
    (weights [P, in, out], biases [P, 1, out]), with one hyperparameter or several."""
    rng = np.random.default_rng(0)
    for seeds in (0, [3, 4]):
        if isinstance(seeds, int):
            generator, lead = tf.random.Generator.from_seed(seeds), []
        else:
            generator, lead = PopulationGenerator(seeds), [len(seeds)]
        layer = HyperDense(3, 5, n_hyper, generator, per_unit)
        plain = Dense(3, 5, generator)
        x = tf.constant(rng.normal(size=(*lead, 4, 3)), DTYPE)
        lam = tf.constant(rng.normal(size=(*lead, 4, n_hyper)), DTYPE)
        xt, lam_t = tf.linalg.matrix_transpose(x), tf.linalg.matrix_transpose(lam)
        for got, want in (
            (layer.feature_major(xt, lam_t), layer(x, lam)),
            (plain.feature_major(xt), plain(x)),
        ):
            assert got.shape == [*lead, 5, 4]
            np.testing.assert_allclose(tf.linalg.matrix_transpose(got), want, rtol=1e-12)


def test_init_scales():
    assert np.all(make_layer(hyper_init="zero").v.numpy() == 0)
    big = HyperDense(50, 400, 1, tf.random.Generator.from_seed(1), hyper_init="design")
    assert big.v.numpy().std() == pytest.approx(0.1, rel=0.15)
    assert np.abs(big.w.numpy()).max() <= 1 / np.sqrt(50)


def test_variable_groups_are_disjoint_and_complete():
    model = ToyHyperNet(1, tf.random.Generator.from_seed(0), depth=2, width=3)
    elementary = {id(v) for v in model.elementary_weights}
    hyper = {id(v) for v in model.hyper_weights}
    assert not elementary & hyper
    assert elementary | hyper == {id(v) for v in model.trainable_variables}
    assert len(model.layers) == 4  # input, 2 hidden, output


def test_gradient_reaches_lambda_only_through_hyper_path():
    model = ToyHyperNet(1, tf.random.Generator.from_seed(0), hyper_init="zero")
    x = tf.constant([[0.3], [-1.0]], DTYPE)
    lam = tf.Variable([[0.5], [0.5]], dtype=DTYPE)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(model(x, lam))
    assert np.all(tape.gradient(y, lam).numpy() == 0)  # V = C = 0: no response yet


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=0), "depth=0 must be a positive integer"),
        (dict(width=2.5), "width=2.5 must be a positive integer"),
        (dict(activation="gelu"), "activation='gelu' is not allowed"),
        (dict(hyper_init="xavier"), "hyper_init='xavier' is not allowed"),
    ],
)
def test_bad_model_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ToyHyperNet(1, tf.random.Generator.from_seed(0), **kwargs)
