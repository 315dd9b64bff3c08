"""The variants of Algorithm 1: Delta-STN's published weight step against a hand-computed step,
its linearized prediction against the Taylor expansion, and how a variant's settings apply."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from stn.experiments import toy
from stn.method.hyperparameters import DEFAULT_DTYPE as DTYPE
from stn.method.layers import HyperDense
from stn.method.models import HyperModel, ToyHyperNet
from stn.method.stn import STN, STNConfig
from stn.method.variants import LinearizedModel
from stn.tasks.toy import x_range_spec
from stn.tooling.notebooks import notebook_parameters

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_linearized_prediction_is_the_first_order_taylor_expansion():
    """f(x, 0) + J(x, 0)·h, by forward mode, equals the same expansion with the Jacobian from
    reverse mode to 1e-10; the gap to f(x, h) is second order in h."""
    model = ToyHyperNet(2, tf.random.Generator.from_seed(0), depth=2, width=5, activation="tanh")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-2, 2, (7, 1)), DTYPE)
    origin = tf.zeros([7, 2], DTYPE)
    direction = tf.constant(rng.normal(size=(7, 2)), DTYPE)
    with tf.GradientTape() as tape:
        tape.watch(origin)
        output = model(x, origin)
    jacobian = tape.batch_jacobian(output, origin)  # [examples, outputs, H]
    taylor = output + tf.einsum("noh,nh->no", jacobian, direction)
    linearized = LinearizedModel(model)(x, direction)
    np.testing.assert_allclose(linearized.numpy(), taylor.numpy(), rtol=0, atol=1e-10)

    def gap(scale: float) -> float:
        exact = model(x, scale * direction)
        return float(tf.reduce_max(tf.abs(exact - LinearizedModel(model)(x, scale * direction))))

    assert gap(1e-2) > 0
    assert gap(5e-3) / gap(1e-2) == pytest.approx(0.25, rel=0.05)  # O(h²)


class Linear(HyperModel):
    """One hyper dense layer and no activation: y = x W(λ) + b(λ)."""

    def __init__(self, n_hyper: int, generator: tf.random.Generator):
        super().__init__(name="linear")
        self.layers = (HyperDense(3, 1, n_hyper, generator, name="dense"),)

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor) -> tf.Tensor:
        return self.layers[0](x, hnet_input)


class Regression:
    """Squared error on one fixed batch; the hyperparameter acts only through the network."""

    stop_metric = "loss"
    dtype = DTYPE

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.x = tf.constant(rng.normal(size=(6, 3)), DTYPE)
        self.y = tf.constant(rng.normal(size=(6, 1)), DTYPE)

    def train_batch(self, generator):
        return self.x, self.y

    valid_batch = train_batch

    def train_loss(self, model, batch, hnet_input, values, generator):
        return self.valid_loss(model, batch, hnet_input)

    def valid_loss(self, model, batch, hnet_input):
        x, y = batch
        return tf.reduce_mean(tf.square(model(x, hnet_input) - y))

    def evaluate(self, model, hnet_input):
        loss = self.valid_loss(model, (self.x, self.y), hnet_input(6))
        return {"loss": loss}, tf.zeros([1], DTYPE)


def test_delta_step_matches_a_hand_computed_step():
    """Published Delta-STN, SGD (first step: w ← w − lr·g): the general weights descend the loss
    at λ; then, with the general weights already updated, the response weights descend the loss
    of the linearized prediction at the perturbation d = (λ + ε) − λ. Gradients by hand."""
    config = STNConfig(
        hypernet_input="centered", weight_step="delta", weight_optimizer="sgd", weight_lr=0.1
    )
    stn = STN(Regression(), [x_range_spec(scale=0.8)], Linear, config, seed=0)
    layer = stn.model.layers[0]
    rng = np.random.default_rng(2)
    for var in stn.model.weights:  # generic values: no zero response, no symmetric weights
        var.assign(rng.normal(size=var.shape))
    w, b, wh, bh, v, c = (var.numpy() for var in (layer.w, layer.b, *stn.model.hyper_weights))
    state = stn.generator.state.numpy()  # a copy: the run draws the same ε next
    generator = tf.random.Generator.from_state(state, stn.generator.algorithm)
    perturbed = stn.hyperparameters.sample(6, generator).numpy()
    d = perturbed - stn.hyperparameters.unconstrained.numpy()  # [6, 1]
    stn.weight_step()

    x, y, lr, n = stn.task.x.numpy(), stn.task.y.numpy(), 0.1, 6
    r = x @ w + b - y  # general phase: hypernetwork input 0
    w1, b1 = w - lr * 2 / n * x.T @ r, b - lr * 2 / n * r.sum(0)
    s_w, s_b, xwh = d @ v, d @ c, x @ wh  # response phase: linear in d, so exact
    r = x @ w1 + b1 + s_w * xwh + s_b * bh - y
    expected = {
        "w": w1,
        "b": b1,
        "w_hyper": wh - lr * 2 / n * x.T @ (r * s_w),
        "b_hyper": bh - lr * 2 / n * (r * s_b).sum(0),
        "v": v - lr * 2 / n * d.T @ (r * xwh),
        "c": c - lr * 2 / n * d.T @ (r * bh),
    }
    names = ("w", "b", "w_hyper", "b_hyper", "v", "c")
    actual = (layer.w, layer.b, *stn.model.hyper_weights)
    assert [var.name.split(":")[0].rsplit("/", 1)[-1] for var in actual] == list(names)
    for name, var in zip(names, actual, strict=True):
        np.testing.assert_allclose(var.numpy(), expected[name], rtol=1e-12, atol=1e-12)


def test_delta_step_has_an_optimizer_per_phase():
    stn = toy.variant("delta-stn", max_cycles=10, chunk_cycles=10, snapshot_every=10).build().stn
    general, response = stn.weight_update.optimizers
    assert len(stn.optimizers) == 4
    assert {v.ref() for v in general.variables} != {v.ref() for v in response.variables}


def test_a_variant_keeps_its_settings_unless_one_is_given():
    assert toy.variant("centered + split step + width 8", width=None).width == 8
    assert toy.variant("centered + split step + width 8", width=16).width == 16
    assert toy.variant("per-layer scale + warm-up 500", warmup_steps=None).warmup_steps == 500
    assert toy.variant("default", width=None).width == 4  # the ToyExperiment default


@pytest.mark.parametrize(
    "name, width", [("centered + split step + width 8", 8), ("default", 4), ("centered", 4)]
)
def test_the_toy_notebook_runs_the_variant_it_names(name, width):
    """``-p variant "centered + split step + width 8"`` with the notebook's other defaults
    builds width 8: the notebook's parameters do not override the variant's settings."""
    parameters = {**notebook_parameters(NOTEBOOKS / "toy_stn.ipynb"), "variant": name}
    experiment = toy.ToySettings(**parameters).experiment()
    assert experiment.width == width
    model = experiment.build().model
    assert model.layers[1].w.shape == (width, width)
    assert experiment.validation_range == parameters["validation_range"]
    assert toy.ToySettings(**{**parameters, "width": 6}).experiment().width == 6


def test_a_delta_stn_chunk_compiles_once():
    """XLA compiles the Delta-STN chunk on its first call only. With ForwardAccumulator it
    recompiled on every call (about 10 s and 600 memory maps each), and a robustness study of
    330 runs died when the process ran out of memory maps."""

    def maps() -> int:
        return len(Path("/proc/self/maps").read_text().splitlines())

    trainer = toy.variant("delta-stn", max_cycles=20, target=None).build()
    trainer.run()  # traces and compiles
    before = maps()
    for seed in range(3):
        trainer.reset(seed)
        trainer.run()
    assert trainer.trace_count == 1
    assert maps() - before < 50  # a recompilation adds hundreds
