"""The best-response check: closed forms against finite differences and a generic optimizer,
the response read off the layer against its forward pass, a short STN run, the toy sweep."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from stn.experiments import best_response as br
from stn.experiments import toy as experiments
from stn.method.hyperparameters import DEFAULT_DTYPE as DTYPE
from stn.method.layers import HyperDense
from stn.method.models import ToyHyperNet

EXPERIMENT = br.RidgeExperiment()
PROBLEM = EXPERIMENT.problem()
TRANSFORM = EXPERIMENT.transform()
LAMBDAS = [1e-3, 0.05, 0.3, 2.0]


def central(fn, x: float, h: float) -> np.ndarray:
    return (fn(x + h) - fn(x - h)) / (2 * h)


@pytest.mark.parametrize("lam", LAMBDAS)
def test_closed_forms_match_finite_differences(lam):
    h = 1e-5 * lam
    slope = central(PROBLEM.best_response, lam, h)
    assert br.relative_error(PROBLEM.best_response_slope(lam), slope) < 1e-6
    hypergradient = central(PROBLEM.valid_loss_at, lam, h)
    assert abs(PROBLEM.hypergradient(lam) / hypergradient - 1) < 1e-6


@pytest.mark.parametrize("lam", LAMBDAS)
def test_best_response_minimises_the_training_loss(lam):
    """A generic optimizer on f(λ, ·) finds the closed form; the bias is not decayed."""
    k = PROBLEM.n_features + 1
    result = optimize.minimize(
        lambda t: PROBLEM.train_loss(t, lam), np.zeros(k), method="BFGS", options={"gtol": 1e-12}
    )
    assert br.relative_error(result.x, PROBLEM.best_response(lam)) < 1e-6
    theta = PROBLEM.best_response(lam)
    assert PROBLEM.train_loss(theta, lam) <= PROBLEM.train_loss(theta + 1e-3, lam)


def test_vectorised_closed_forms_match_one_at_a_time():
    lam = np.array(LAMBDAS)
    stacked = PROBLEM.best_response(lam)
    assert stacked.shape == (len(LAMBDAS), PROBLEM.n_features + 1)
    for i, v in enumerate(LAMBDAS):
        assert np.allclose(stacked[i], PROBLEM.best_response(v), rtol=1e-12)
        assert np.allclose(PROBLEM.best_response_slope(lam)[i], PROBLEM.best_response_slope(v))


def test_optimum_lies_well_inside_the_bounds_and_far_from_the_start():
    lam_star = PROBLEM.optimum(EXPERIMENT.lower, EXPERIMENT.upper)
    assert math.log10(lam_star / EXPERIMENT.lower) >= 1
    assert math.log10(EXPERIMENT.upper / lam_star) >= 1
    assert abs(math.log10(lam_star / EXPERIMENT.lambda_init)) >= 1
    assert abs(PROBLEM.hypergradient(lam_star)) * lam_star < 1e-12  # a stationary point
    grid = np.geomspace(EXPERIMENT.lower, EXPERIMENT.upper, 500)
    assert PROBLEM.valid_loss_at(lam_star) <= PROBLEM.valid_loss_at(grid).min()


def test_log_interval_round_trip_and_derivatives():
    u = np.linspace(-4, 4, 9)
    lam = TRANSFORM.value(u)
    assert np.allclose(TRANSFORM.unconstrained(lam), u, atol=1e-10)
    assert np.allclose(TRANSFORM.forward(tf.constant(u, DTYPE)).numpy(), lam, rtol=1e-14)
    assert all(abs(TRANSFORM.inverse(v) - w) < 1e-10 for v, w in zip(lam, u, strict=True))
    h = 1e-6
    assert np.allclose(TRANSFORM.slope(u), central(TRANSFORM.value, u, h), rtol=1e-7)
    log_lam = central(lambda x: np.log(TRANSFORM.value(x)), u, h)
    assert np.allclose(TRANSFORM.log_slope(u), log_lam, rtol=1e-7)
    assert TRANSFORM.value(-50) > TRANSFORM.lower and TRANSFORM.value(50) <= TRANSFORM.upper


@pytest.mark.parametrize("per_unit", [True, False])
def test_response_read_from_the_layer_equals_its_forward_pass(per_unit):
    gen = tf.random.Generator.from_seed(3)
    layer = HyperDense(6, 1, 1, gen, per_unit=per_unit, hyper_init="design")
    x = gen.normal([5, 6], dtype=DTYPE).numpy()
    h = np.array([[-2.0], [-0.5], [0.0], [0.7], [3.0]])
    theta = br.layer_response(layer, h).numpy()
    forward = layer(x, h).numpy()[:, 0]
    assert np.allclose(np.sum(np.c_[x, np.ones(5)] * theta, axis=1), forward, rtol=1e-12)
    slope = (br.layer_response(layer, h + 1e-6) - br.layer_response(layer, h - 1e-6)) / 2e-6
    assert np.allclose(slope.numpy(), br.layer_slope(layer).numpy()[None], rtol=1e-7)


@pytest.fixture(scope="module")
def trainer():
    """The default variant with eager-friendly settings (no XLA: the graph builds fast)."""
    exp = br.ridge_variant("default", max_cycles=400, chunk_cycles=100, jit_compile=False)
    return exp, exp.build()


def test_task_losses_match_the_closed_form_loss(trainer):
    exp, stn = trainer
    task, model = stn.task, stn.model
    model.layer.v.assign([[0.4]])  # a response that is not zero
    model.layer.c.assign([[-0.2]])
    n = len(PROBLEM.y_train)
    for h, lam in ((0.0, 0.01), (1.3, 0.5)):
        theta = br.layer_response(model.layer, [[h]]).numpy()[0]
        hnet, values = (tf.fill([n, 1], tf.constant(v, DTYPE)) for v in (h, lam))
        loss = task.train_loss(model, task.train, hnet, values, stn.stn.generator)
        assert np.isclose(loss.numpy(), PROBLEM.train_loss(theta, lam), rtol=1e-12)
        valid = task.valid_loss(model, task.valid, tf.fill([len(PROBLEM.y_valid), 1],
                                                           tf.constant(h, DTYPE)))  # fmt: skip
        assert np.isclose(valid.numpy(), PROBLEM.valid_loss(theta), rtol=1e-12)


def test_recorded_hypergradient_is_the_derivative_of_the_validation_loss(trainer):
    """The evaluation's dF/du, against finite differences of F(θ̂(h)) through the forward pass."""
    exp, stn = trainer
    stn.model.layer.v.assign([[0.4]])
    metrics, snapshot = stn.stn.evaluate()
    m = len(PROBLEM.y_valid)
    h0 = br.network_input(stn, stn.hyperparameters.unconstrained.numpy())[0, 0]

    def valid(h: float) -> float:
        hnet = tf.fill([m, 1], tf.constant(h, DTYPE))
        return stn.task.valid_loss(stn.model, stn.task.valid, hnet).numpy()

    assert np.isclose(metrics["hypergradient"].numpy(), central(valid, h0, 1e-6), rtol=1e-6)
    assert np.isclose(metrics["valid_loss"].numpy(), valid(h0), rtol=1e-12)
    k = PROBLEM.n_features + 1
    assert np.allclose(snapshot.numpy()[k:], br.layer_slope(stn.model.layer).numpy())


def test_a_short_run_moves_lambda_toward_the_optimum(trainer):
    exp, stn = trainer
    stn.reset(0)
    trajectory = stn.run()
    lam_star = PROBLEM.optimum(exp.lower, exp.upper)
    row = br.measure_run(stn, trajectory, PROBLEM, TRANSFORM, lam_star, exp.weight_step != "joint")
    start = abs(math.log(exp.lambda_init / lam_star))
    assert abs(row["log_error"]) < 0.25 * start
    assert row["response_error"] < 0.1 and row["slope_cosine"] > 0.8
    assert np.isclose(row["lambda_final"], trajectory.values[-1, 0], rtol=1e-12)
    assert len(row["run"]["stn_hypergradient"]) == len(trajectory.eval_cycles)
    early = row["run"]["true_hypergradient"][:5]
    assert np.all(early < 0)  # λ must grow from its start, so the exact hypergradient is negative


def expected_training_loss(theta0, slope, u, sigma, nodes=41):
    """E_ε f(λ(u + ε), θ₀ + εs) by quadrature, straight from the definition of f."""
    x, w = br.gauss_hermite(nodes)
    theta = theta0 + sigma * x[:, None] * slope  # one row per node
    residual = theta @ PROBLEM.x_train.T - PROBLEM.y_train
    kernel = theta[:, :-1]
    lam = TRANSFORM.value(u + sigma * x)
    return w @ (np.mean(residual**2, axis=1) + lam * np.sum(kernel**2, axis=1))


@pytest.mark.parametrize("split", [False, True])
def test_stn_equilibrium_minimises_the_expected_training_loss(split):
    u, sigma, k = 0.3, 0.7, PROBLEM.n_features + 1
    theta0, slope = PROBLEM.stn_equilibrium(u, sigma, TRANSFORM, split)
    if split:
        assert np.allclose(theta0, PROBLEM.best_response(TRANSFORM.value(u)))

        def loss(z):
            return expected_training_loss(theta0, z, u, sigma)

        found = optimize.minimize(loss, np.zeros(k), method="BFGS", options={"gtol": 1e-10}).x
        assert br.relative_error(found, slope) < 1e-4
    else:

        def loss(z):
            return expected_training_loss(z[:k], z[k:], u, sigma)

        found = optimize.minimize(loss, np.zeros(2 * k), method="BFGS", options={"gtol": 1e-10}).x
        assert br.relative_error(found, np.r_[theta0, slope]) < 1e-4


def test_small_perturbations_recover_the_exact_slope_and_optimum():
    lam_star = PROBLEM.optimum(TRANSFORM.lower, TRANSFORM.upper)
    u = float(TRANSFORM.unconstrained(lam_star))
    exact = PROBLEM.best_response_slope(lam_star) * TRANSFORM.slope(u)
    for split in (False, True):
        _, slope = PROBLEM.stn_equilibrium(u, 1e-3, TRANSFORM, split)
        assert br.relative_error(slope, exact) < 1e-3
        assert abs(math.log(PROBLEM.stn_fixed_point(1e-3, TRANSFORM, split) / lam_star)) < 1e-4
    # a large perturbation biases the joint step's fixed point, and the smoothed objective's
    assert PROBLEM.stn_fixed_point(1.0, TRANSFORM, False) < 0.75 * lam_star
    assert abs(math.log(PROBLEM.smoothed_optimum(1e-3, TRANSFORM) / lam_star)) < 1e-4


def test_ridge_variant_applies_the_variant_and_refuses_what_it_cannot(monkeypatch):
    exp = br.ridge_variant("default", seed=4)
    assert exp.hypernet_input == "centered" and exp.weight_step == "split"
    assert exp.hyper_init == "zero" and exp.seed == 4
    assert exp.config().hypernet_input == "centered" and exp.config().target is None
    assert br.ridge_variant("per-layer scale", warmup_steps=0).per_unit is False
    monkeypatch.setitem(experiments.VARIANTS, "new", {"width": 8, "train_steps": 5})
    assert br.ridge_variant("new").train_steps == 5  # the toy's width does not apply
    monkeypatch.setitem(experiments.VARIANTS, "odd", {"linearize": True})
    with pytest.raises(ValueError, match="sets linearize=True, which the ridge task lacks"):
        br.ridge_variant("odd")
    with pytest.raises(ValueError, match="unknown parameter"):
        br.ridge_variant("default", widht=3)
    with pytest.raises(ValueError, match="variant='nope' is unknown"):
        br.ridge_variant("nope")


def test_agreement_interval():
    x = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    truth = np.ones(5)
    predicted = np.array([50.0, 2.0, 1.0, 0.5, 0.01])
    assert br.agreement_interval(x, predicted, truth, 2.1, 3.0) == (1.0, 4.0)
    assert np.isnan(br.agreement_interval(x, predicted, truth, 0.5, 3.0)[0])


@pytest.mark.parametrize("name", ["default", "per-unit scale"])
def test_toy_prediction_at_the_current_range_is_the_networks_evaluation(name):
    toy = experiments.variant(name, seed=1, jit_compile=False)
    stn = toy.build()
    for layer in stn.model.layers:  # a response that is not zero (Delta-STN starts at V = 0)
        layer.v.assign_add(tf.fill(layer.v.shape, tf.constant(0.1, DTYPE)))
    x_now = float(stn.hyperparameters.values().numpy()[0])
    predicted = br.toy_predicted_losses(stn, [x_now, 3.0])
    grid = stn.task.grid
    _, prediction = stn.stn.evaluate()
    assert np.isclose(predicted[0], np.mean((prediction.numpy() - grid.numpy()[:, 0] ** 2) ** 2))
    assert predicted[1] != predicted[0]


def test_toy_ground_truth_trains_plain_networks():
    toy = experiments.variant("default", jit_compile=False)
    losses = br.toy_ground_truth(toy, [0.5, 2.0], [0, 1], steps=300)
    assert losses.shape == (2, 2) and np.all(np.isfinite(losses))
    assert losses[1].mean() < losses[0].mean()  # training on [−2, 2] fits [−2, 2] better
    net = ToyHyperNet(1, tf.random.Generator.from_seed(0), depth=2, width=3, hyper=False)
    assert net.hyper_weights == () and len(net.elementary_weights) == 8


def test_figures_are_written(trainer, tmp_path):
    """Every figure of the notebook, from a short run's measurements."""
    from PIL import Image

    from stn.tooling import best_response_plots as brplots
    from stn.tooling.plots import save_figure

    exp, stn = trainer
    stn.reset(1)
    trajectory = stn.run(max_cycles=100)
    lam_star = PROBLEM.optimum(exp.lower, exp.upper)
    row = br.measure_run(
        stn, trajectory, PROBLEM, TRANSFORM, lam_star, exp.weight_step != "joint", 0.5
    )
    rows = {"default": [row, row]}
    curves = br.bias_curves(PROBLEM, TRANSFORM, [0.1, 1.0])
    sweep = {
        "x": np.geomspace(0.5, 4, 4),
        "x_final": 2.0,
        "predicted": np.array([1.0, 0.1, 0.01, 0.1]),
        "truth": np.array([[0.5, 0.6], [0.05, 0.2], [0.02, 0.01], [0.1, 0.3]]),
    }
    sweep["x_range"] = sweep.pop("x")
    figures = {
        "response": brplots.response_plot(rows),
        "hypergradient": brplots.hypergradient_plot(rows),
        "lambda": brplots.lambda_plot(rows, rows, curves, 3.0),
        "toy": brplots.toy_sweep_plot(sweep, 2.0, 3.0, (1.0, 2.0)),
    }
    for name, fig in figures.items():
        save_figure(fig, tmp_path / f"{name}.png")
        assert Image.open(tmp_path / f"{name}.png").format == "PNG"
