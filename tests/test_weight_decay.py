"""Weight decay as a tuned hyperparameter: λ_wd·‖W(λ_i)‖² in the training loss only."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE as DTYPE
from stn.method.hyperparameters import HyperparameterSpec
from stn.method.layers import Conv2D, Dense, HyperConv2D, HyperDense
from stn.method.models import HyperMLP
from stn.method.stn import STN, STNConfig
from stn.tasks.classification import (
    WEIGHT_DECAY,
    ClassificationTask,
    classification_specs,
    load_digits_split,
    weight_decay_spec,
)
from stn.training.loop import Trainer

N_HYPER = 2  # dropout_1 and weight_decay


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0, n_train=100, n_valid=100)


@pytest.fixture(scope="module")
def specs():
    return classification_specs(1, augmentations=(), weight_decay=1e-3)


@pytest.fixture(scope="module")
def task(digits, specs):
    return ClassificationTask(digits, [s.name for s in specs], batch_size=16)


@pytest.fixture(scope="module")
def plain_task(digits):
    """The same problem without weight decay."""
    return ClassificationTask(digits, ["dropout_1"], batch_size=16)


def _model(n_hyper: int = N_HYPER, hyper: bool = True) -> HyperMLP:
    model = HyperMLP(n_hyper, tf.random.Generator.from_seed(0), hidden=(8,), hyper=hyper)
    for layer in model.layers if hyper else ():  # a visible response: V away from its tiny init
        layer.v.assign(tf.random.stateless_normal(layer.v.shape, [1, 2], stddev=0.5, dtype=DTYPE))
    return model


def _values(batch: int, rates: np.ndarray) -> tf.Tensor:
    """Constrained values [batch, 2]: no dropout, weight decay ``rates``."""
    return tf.constant(np.stack([np.zeros(batch), rates], axis=1), DTYPE)


def _materialised_norms(model: HyperMLP, lam: np.ndarray) -> np.ndarray:
    """Σ_layers ‖W_elem + W_hyper·diag(λ_i V)‖² per example, kernel by kernel."""
    total = np.zeros(len(lam))
    for layer in model.layers:
        s = lam @ layer.v.numpy()  # [batch, out]
        kernels = layer.w.numpy()[None] + layer.w_hyper.numpy()[None] * s[:, None, :]
        total += np.square(kernels).sum(axis=(1, 2))
    return total


# -- the kernel norm -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_unit", [True, False])
def test_hyper_dense_norm_is_the_norm_of_each_examples_kernel(per_unit):
    layer = HyperDense(3, 4, 2, tf.random.Generator.from_seed(1), per_unit, hyper_init="design")
    lam = np.random.default_rng(0).normal(size=(5, 2))
    s = lam @ layer.v.numpy()  # [5, 4] or [5, 1]
    kernels = layer.w.numpy()[None] + layer.w_hyper.numpy()[None] * s[:, None, :]
    np.testing.assert_allclose(
        layer.squared_kernel_norm(tf.constant(lam, DTYPE)), np.square(kernels).sum(axis=(1, 2))
    )


def test_hyper_conv_norm_is_the_norm_of_each_examples_filters():
    layer = HyperConv2D(2, 3, 3, 2, tf.random.Generator.from_seed(1), hyper_init="design")
    lam = np.random.default_rng(0).normal(size=(5, 2))
    s = lam @ layer.v.numpy()  # one scalar per output channel
    filters = layer.w.numpy()[None] + layer.w_hyper.numpy()[None] * s[:, None, None, None, :]
    np.testing.assert_allclose(
        layer.squared_kernel_norm(tf.constant(lam, DTYPE)),
        np.square(filters).sum(axis=(1, 2, 3, 4)),
    )


def test_plain_layers_decay_their_kernel_not_their_bias():
    g = tf.random.Generator.from_seed(0)
    for layer in (Dense(3, 4, g), Conv2D(2, 3, 3, g)):
        np.testing.assert_allclose(layer.squared_kernel_norm(), np.square(layer.w.numpy()).sum())


def test_model_norm_sums_its_layers():
    model = _model()
    lam = np.random.default_rng(0).normal(size=(4, N_HYPER))
    np.testing.assert_allclose(
        model.squared_kernel_norm(tf.constant(lam, DTYPE)), _materialised_norms(model, lam)
    )


# -- the task ------------------------------------------------------------------------------------


def test_penalty_is_in_the_training_loss_per_example_and_scales_with_lambda(task):
    model, generator = _model(), tf.random.Generator.from_seed(0)
    batch = task.train_batch(generator)
    lam = np.random.default_rng(1).normal(size=(16, N_HYPER))
    hnet_input = tf.constant(lam, DTYPE)
    rates = np.linspace(1e-3, 5e-3, 16)  # each example its own λ_wd

    def loss(r: np.ndarray) -> float:
        return float(task.train_loss(model, batch, hnet_input, _values(16, r), generator))

    bare = loss(np.zeros(16))
    penalty = np.mean(rates * _materialised_norms(model, lam))
    assert penalty > 1e-4
    np.testing.assert_allclose(loss(rates) - bare, penalty, rtol=1e-9)
    np.testing.assert_allclose(loss(2 * rates) - bare, 2 * penalty, rtol=1e-9)
    # at λ_wd = 0 and no dropout the training loss is the validation loss: the cross-entropy
    np.testing.assert_allclose(bare, task.valid_loss(model, batch, hnet_input), rtol=1e-12)


def test_penalty_trains_the_response_to_weight_decay(task):
    """The penalty reaches V (the hypernetwork), not only the elementary weights."""
    model, generator = _model(), tf.random.Generator.from_seed(0)
    batch = task.train_batch(generator)
    hnet_input = tf.constant(np.random.default_rng(1).normal(size=(16, N_HYPER)), DTYPE)
    v = model.layers[0].v
    grads = []
    for rate in (0.0, 5e-3):
        with tf.GradientTape() as tape:
            loss = task.train_loss(
                model, batch, hnet_input, _values(16, np.full(16, rate)), generator
            )
        grads.append(tape.gradient(loss, v).numpy())
    assert np.abs(grads[1] - grads[0]).max() > 1e-6


def test_validation_loss_and_evaluation_ignore_weight_decay(task, plain_task):
    model = _model()
    batch = task.valid_batch(tf.random.Generator.from_seed(0))
    hnet_input = tf.constant(np.random.default_rng(1).normal(size=(100, N_HYPER)), DTYPE)
    assert float(task.valid_loss(model, batch, hnet_input)) == float(
        plain_task.valid_loss(model, batch, hnet_input)
    )

    def eval_input(n: int) -> tf.Tensor:
        return tf.fill([n, N_HYPER], tf.constant(-2.0, DTYPE))

    with_decay, _ = task.evaluate(model, eval_input)
    without, _ = plain_task.evaluate(model, eval_input)
    assert {k: float(v) for k, v in with_decay.items()} == {k: float(v) for k, v in without.items()}


def test_without_weight_decay_the_training_loss_is_the_cross_entropy(task, plain_task):
    model, generator = _model(), tf.random.Generator.from_seed(0)
    batch = plain_task.train_batch(generator)
    hnet_input = tf.constant(np.random.default_rng(1).normal(size=(16, N_HYPER)), DTYPE)
    plain = plain_task.train_loss(model, batch, hnet_input, tf.zeros([16, 1], DTYPE), generator)
    assert plain_task.weight_decay_column is None
    assert float(plain) == float(plain_task.valid_loss(model, batch, hnet_input))
    assert float(plain) < float(
        task.train_loss(model, batch, hnet_input, _values(16, np.full(16, 1e-2)), generator)
    )


def test_plain_model_gets_the_same_penalty_for_every_example(task):
    """The baselines' models (no hyper weights) decay their one kernel per layer."""
    model, generator = _model(hyper=False), tf.random.Generator.from_seed(0)
    batch = task.train_batch(generator)
    norm = sum(np.square(layer.w.numpy()).sum() for layer in model.layers)
    bare = task.train_loss(model, batch, None, _values(16, np.zeros(16)), generator)
    decayed = task.train_loss(model, batch, None, _values(16, np.full(16, 3e-3)), generator)
    np.testing.assert_allclose(decayed - bare, 3e-3 * norm, rtol=1e-9)


# -- specs and their checks ----------------------------------------------------------------------


def test_weight_decay_spec_is_added_last_with_its_bounds():
    base = classification_specs(2, scale=0.3)
    tuned = classification_specs(2, weight_decay=2e-3, weight_decay_bounds=(0.0, 0.1), scale=0.3)
    assert tuned[:-1] == base  # the other columns, unchanged and first
    assert tuned[-1] == HyperparameterSpec(WEIGHT_DECAY, 2e-3, 0.0, 0.1, scale=0.3)
    assert classification_specs(2, weight_decay=None) == classification_specs(2)
    assert len(classification_specs(2)) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"weight_decay": -1e-3},
            r"^weight_decay=-0\.001 is not allowed; it must be a number strictly inside "
            r"weight_decay_bounds=\(0\.0, 0\.01\), or None",
        ),
        ({"weight_decay": 0.0}, r"^weight_decay=0\.0 is not allowed"),
        ({"weight_decay": 0.01}, r"^weight_decay=0\.01 is not allowed"),
        ({"weight_decay": True}, r"^weight_decay=True is not allowed"),
        ({"weight_decay": float("nan")}, r"^weight_decay=nan is not allowed"),
        ({"weight_decay": "1e-3"}, r"^weight_decay='1e-3' is not allowed"),
        (
            {"weight_decay": 1e-3, "weight_decay_bounds": (-1.0, 1.0)},
            r"^weight_decay_bounds=\(-1\.0, 1\.0\) is not allowed; it must be a pair \(lower, "
            r"upper\) of finite numbers with 0 <= lower < upper$",
        ),
        ({"weight_decay": 1e-3, "weight_decay_bounds": (0.1, 0.01)}, r"weight_decay_bounds="),
        ({"weight_decay": 1e-3, "weight_decay_bounds": (0.0,)}, r"weight_decay_bounds="),
    ],
)
def test_bad_weight_decay_is_refused_with_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        classification_specs(1, **kwargs)


def test_weight_decay_spec_accepts_a_positive_lower_bound():
    spec = weight_decay_spec(1e-3, (1e-5, 1e-1))
    assert (spec.lower, spec.upper, spec.initial) == (1e-5, 1e-1, 1e-3)


def _config() -> STNConfig:
    return STNConfig(
        warmup_steps=2,
        train_steps=1,
        valid_steps=1,
        max_cycles=3,
        target=None,
        chunk_cycles=3,
        snapshot_every=3,
        jit_compile=False,
    )


def _model_fn(n_hyper: int, generator: tf.random.Generator) -> HyperMLP:
    return HyperMLP(n_hyper, generator, hidden=(8,))


def test_stn_refuses_a_weight_decay_that_could_go_negative(task):
    unbounded = [
        HyperparameterSpec("dropout_1", 0.05, 0.0, 0.9),
        HyperparameterSpec(WEIGHT_DECAY, 1e-3),
    ]
    with pytest.raises(
        ValueError, match=r"'weight_decay' has lower=None; weight decay must stay >= 0"
    ):
        STN(task, unbounded, _model_fn, _config())
    exp = [unbounded[0], HyperparameterSpec(WEIGHT_DECAY, 1e-3, transform="exp")]
    STN(task, exp, _model_fn, _config())  # positive by its transform: allowed


def test_stn_refuses_specs_that_differ_from_the_task_names(task, specs):
    with pytest.raises(ValueError, match=r"specs are named \('weight_decay', 'dropout_1'\)"):
        STN(task, specs[::-1], _model_fn, _config())


def test_stn_tunes_weight_decay_inside_its_bounds(task, specs):
    trainer = Trainer(STN(task, specs, _model_fn, _config(), seed=0))
    trajectory = trainer.run()
    column = trajectory.names.index(WEIGHT_DECAY)
    decay = trajectory.values[:, column]
    assert np.all((decay > 0) & (decay < 1e-2)) and decay[-1] != 1e-3
    assert np.isfinite(trajectory.weight_loss).all()
