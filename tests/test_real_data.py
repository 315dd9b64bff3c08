"""Real data: HyperConv2D, per-example dropout, the digits task, baselines and Optuna resume."""

from __future__ import annotations

import dataclasses
import urllib.error

import numpy as np
import optuna
import pytest
import ray
import tensorflow as tf

from stn.experiments.baselines import (
    FixedTrainer,
    RunResult,
    SearchResult,
    StoredTrials,
    grid_points,
    halving_search,
    random_points,
    search,
    stored_search,
    tpe_search,
)
from stn.experiments.real_data import (
    SINGLE_RUNS,
    Comparison,
    MethodResult,
    RealDataExperiment,
    bootstrap_interval,
    late_improvement,
    markdown_table,
    paired_difference,
    run_seeds,
    summary,
)
from stn.experiments.workers import BACKENDS, WorkerPool, Workers
from stn.method.hyperparameters import DEFAULT_DTYPE as DTYPE
from stn.method.layers import HyperConv2D, conv2d, max_pool_2x2, per_example_dropout
from stn.method.models import HyperCNN, HyperMLP
from stn.method.stn import STN, STNConfig, init_seed, stream
from stn.tasks import classification as stn_data
from stn.tasks.classification import (
    ClassificationTask,
    DatasetUnavailableError,
    classification_specs,
    load_dataset,
    load_digits_split,
)
from stn.training.loop import Trainer


def _conv_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Reference 'VALID' cross-correlation, written out with loops over output positions."""
    n, height, width, _ = x.shape
    k, _, _, c_out = w.shape
    out = np.zeros((n, height - k + 1, width - k + 1, c_out))
    for i in range(height - k + 1):
        for j in range(width - k + 1):
            out[:, i, j] = np.einsum("nabc,abcd->nd", x[:, i : i + k, j : j + k], w)
    return out


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0, n_train=100, n_valid=100)


@pytest.fixture(scope="module")
def task(digits):
    return ClassificationTask(digits, [s.name for s in classification_specs(2)], batch_size=16)


# -- HyperConv2D ---------------------------------------------------------------------------------


def test_hyperconv2d_response_is_the_formula():
    layer = HyperConv2D(2, 3, 3, n_hyper=2, generator=tf.random.Generator.from_seed(1))
    layer.padding = "VALID"
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 2))
    lam = np.random.default_rng(1).normal(size=(4, 2))
    w, b, wh, bh = (t.numpy() for t in (layer.w, layer.b, layer.w_hyper, layer.b_hyper))
    v, c = layer.v.numpy(), layer.c.numpy()
    expected = _conv_valid(x, w) + b
    expected += (lam @ v)[:, None, None, :] * _conv_valid(x, wh) + (lam @ c)[:, None, None, :] * bh
    np.testing.assert_allclose(layer(x, lam).numpy(), expected, atol=1e-10)
    # at λ = 0 only the elementary filters act
    np.testing.assert_allclose(layer(x, np.zeros((4, 2))).numpy(), _conv_valid(x, w) + b)


def test_hyperconv2d_groups_and_shapes():
    layer = HyperConv2D(1, 8, 3, n_hyper=4, generator=tf.random.Generator.from_seed(0))
    assert [v.name.split(":")[0] for v in layer.elementary_weights] == ["w", "b"]
    assert [v.name.split(":")[0] for v in layer.hyper_weights] == ["w_hyper", "b_hyper", "v", "c"]
    assert layer.v.shape == (4, 8) and layer.c.shape == (4, 8)  # one scalar per output channel
    assert np.abs(layer.w.numpy()).max() <= 1 / 3  # U(±1/sqrt(3·3·1))
    assert layer(tf.zeros([2, 8, 8, 1], DTYPE), tf.zeros([2, 4], DTYPE)).shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="padding='same'"):
        HyperConv2D(1, 8, 3, 4, tf.random.Generator.from_seed(0), padding="same")


def _value_and_gradients(f, *inputs: tf.Tensor) -> list[np.ndarray]:
    """f(*inputs) and the gradient of Σ sin(f) with respect to each input."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = f(*inputs)
        loss = tf.reduce_sum(tf.sin(y))
    return [t.numpy() for t in (y, *tape.gradient(loss, inputs))]


@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (1, 1)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv2d_equals_tensorflows_forward_and_backward(kernel, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 7, 6, 2)), DTYPE)
    w = tf.constant(rng.normal(size=(*kernel, 2, 5)), DTYPE)
    ours = _value_and_gradients(lambda x, w: conv2d(x, w, padding), x, w)
    theirs = _value_and_gradients(lambda x, w: tf.nn.conv2d(x, w, 1, padding), x, w)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(8, 8), (4, 5), (3, 3), (1, 2)])
def test_max_pool_2x2_equals_tensorflows_same_pooling(size):
    x = tf.constant(np.random.default_rng(1).normal(size=(2, *size, 3)), DTYPE)  # no ties
    ours = _value_and_gradients(max_pool_2x2, x)
    theirs = _value_and_gradients(lambda x: tf.nn.max_pool2d(x, 2, 2, "SAME"), x)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


# -- per-example inverted dropout -----------------------------------------------------------------


def test_dropout_rate_zero_is_identity():
    x = tf.random.normal([3, 50], dtype=DTYPE)
    out = per_example_dropout(x, tf.zeros([3], DTYPE), tf.random.Generator.from_seed(0))
    np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_dropout_is_per_example_and_inverted():
    rates = np.array([0.0, 0.25, 0.5, 0.8])
    x = tf.ones([4, 20000], DTYPE)
    out = per_example_dropout(x, tf.constant(rates[:, None]), tf.random.Generator.from_seed(0))
    out = out.numpy()
    for row, rate in zip(out, rates, strict=True):
        kept = row[row != 0]
        np.testing.assert_allclose(kept, 1 / (1 - rate))  # survivors scaled by 1/(1 − r)
        assert abs((row == 0).mean() - rate) < 0.015  # about r of the units zeroed
    with pytest.raises(ValueError, match=r"rate has shape \(4, 2\)"):
        per_example_dropout(x, tf.zeros([4, 2], DTYPE), tf.random.Generator.from_seed(0))


# -- data ----------------------------------------------------------------------------------------


def test_digits_split_is_fixed_by_the_seed_and_disjoint():
    a, b, c = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert (len(a.y_train), len(a.y_valid), len(a.y_test)) == (300, 300, 1197)
    rows = [{r.tobytes() for r in x} for x in (a.x_train, a.x_valid, a.x_test)]
    assert sum(len(r) for r in rows) == len(set.union(*rows)) == 1797  # no image in two splits
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert np.bincount(a.y_train).min() >= 29  # stratified: every class about 30 times
    with pytest.raises(ValueError, match="n_train=0"):
        load_digits_split(0, n_train=0)


def test_keras_dataset_failure_gives_a_clear_error(monkeypatch):
    def offline():
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(stn_data, "_keras_loader", lambda name: offline)
    with pytest.raises(
        DatasetUnavailableError, match=r"'mnist'.*URLError.*load_dataset\('digits'\)"
    ):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="name='svhn' is not allowed"):
        load_dataset("svhn")


def test_keras_dataset_split(monkeypatch):
    rng = np.random.default_rng(0)
    fake = (
        (rng.integers(0, 256, (200, 4, 4)), np.repeat(np.arange(10), 20)),
        (rng.integers(0, 256, (50, 4, 4)), np.repeat(np.arange(10), 5)),
    )
    monkeypatch.setattr(stn_data, "_keras_loader", lambda name: lambda: fake)
    d = load_dataset("fashion_mnist", seed=0, n_train=60)
    assert d.input_shape == (4, 4, 1) and d.x_train.max() <= 1.0
    assert (len(d.y_train), len(d.y_valid), len(d.y_test)) == (60, 40, 50)


# -- the classification task ---------------------------------------------------------------------


def test_validation_loss_ignores_dropout_and_augmentation_randomness(task, digits):
    model = HyperMLP(4, tf.random.Generator.from_seed(0), hidden=(16, 16))
    batch = task.valid_batch(tf.random.Generator.from_seed(0))
    lam = tf.zeros([batch[0].shape[0], 4], DTYPE)
    # no random draw inside: repeated calls agree, whatever the global random state
    first = float(task.valid_loss(model, batch, lam))
    tf.random.set_seed(123)
    assert float(task.valid_loss(model, batch, lam)) == first
    # the training loss applies them: random at positive rates, the validation loss at zero
    train_batch = task.train_batch(tf.random.Generator.from_seed(1))
    lam = tf.zeros([16, 4], DTYPE)
    heavy = tf.fill([16, 4], tf.constant(0.4, DTYPE))
    noisy = {
        float(task.train_loss(model, train_batch, lam, heavy, tf.random.Generator.from_seed(s)))
        for s in range(3)
    }
    assert len(noisy) == 3
    clean = task.train_loss(
        model, train_batch, lam, tf.zeros([16, 4], DTYPE), tf.random.Generator.from_seed(0)
    )
    np.testing.assert_allclose(clean, task.valid_loss(model, train_batch, lam))
    metrics, _ = task.evaluate(model, lambda n: tf.zeros([n, 4], DTYPE))
    assert set(metrics) == {"valid_loss", "valid_accuracy", "test_loss", "test_accuracy"}


def test_task_rejects_unknown_hyperparameter_names(digits):
    with pytest.raises(ValueError, match="dropout_1"):
        ClassificationTask(digits, ["input_noise", "dropout_2"])


def test_one_stn_cycle_moves_only_the_right_variables(task):
    specs = classification_specs(2)
    config = STNConfig(
        warmup_steps=0,
        train_steps=1,
        valid_steps=1,
        max_cycles=2,
        target=None,
        chunk_cycles=2,
        snapshot_every=2,
        jit_compile=False,
    )
    stn = STN(task, specs, lambda h, g: HyperMLP(h, g, hidden=(16, 16)), config, seed=0)
    weights, hp = stn.model.weights, stn.hyperparameters

    def snapshot():
        return [v.numpy().copy() for v in (*weights, hp.unconstrained, hp.scale)]

    before = snapshot()
    stn.weight_step()
    after = snapshot()
    moved = [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]
    assert all(moved[: len(weights)]) and not any(moved[len(weights) :])
    stn.hyper_step()
    final = snapshot()
    moved = [not np.array_equal(a, b) for a, b in zip(after, final, strict=True)]
    assert not any(moved[: len(weights)]) and all(moved[len(weights) :])
    trajectory = Trainer(stn).run()
    assert trajectory.values.shape == (2, 4) and np.isfinite(trajectory.metrics["valid_loss"]).all()


# -- models and baselines ------------------------------------------------------------------------


def test_baseline_models_have_no_hyper_weights_and_the_same_architecture():
    g = tf.random.Generator.from_seed
    for cls in (HyperMLP, HyperCNN):
        hyper, plain = cls(4, g(0)), cls(4, g(0), hyper=False)
        assert plain.hyper_weights == () and len(hyper.hyper_weights) > 0
        assert [v.shape for v in plain.elementary_weights] == [
            v.shape for v in hyper.elementary_weights
        ]
        x = tf.zeros([2, 8, 8, 1], DTYPE)
        assert plain(x).shape == hyper(x, tf.zeros([2, 4], DTYPE)).shape == (2, 10)
    assert HyperCNN(1, g(0)).n_dropout == 3 and HyperMLP(1, g(0)).n_dropout == 2
    with pytest.raises(ValueError, match="hnet_input=None"):
        HyperMLP(4, g(0))(tf.zeros([2, 8, 8, 1], DTYPE))


def _trainer(task, eval_every_steps=5):
    def model_fn(h, g):
        return HyperMLP(h, g, hidden=(8,), hyper=False)

    specs = classification_specs(1)
    return FixedTrainer(task, specs, model_fn, eval_every_steps=eval_every_steps, jit_compile=False)


@pytest.fixture(scope="module")
def small_task(digits):
    return ClassificationTask(digits, [s.name for s in classification_specs(1)], batch_size=16)


def test_fixed_training_is_fixed_by_the_seed(small_task):
    trainer = _trainer(small_task)
    values = {"input_dropout": 0.1, "input_noise": 0.1, "dropout_1": 0.2}
    a, b, c = trainer.run(values, 12, 0), trainer.run(values, 12, 0), trainer.run(values, 12, 1)
    assert list(a.steps) == [5, 10, 12]
    np.testing.assert_array_equal(a.metrics["valid_loss"], b.metrics["valid_loss"])
    assert not np.array_equal(a.metrics["valid_loss"], c.metrics["valid_loss"])
    with pytest.raises(ValueError, match="steps=0 must be a positive integer"):
        trainer.run(values, 0, 0)
    with pytest.raises(ValueError, match="lacks"):
        trainer.run({"input_dropout": 0.1}, 15, 0)


def test_a_hypernetwork_at_fixed_values_reads_them_and_trains_its_hyper_weights(small_task):
    """The capacity control: the hyper MLP trained at fixed λ, which its network reads as an
    STN's reads the unperturbed λ (plain input: λ in the unconstrained space)."""
    specs = classification_specs(1)
    trainer = FixedTrainer(
        small_task, specs, lambda h, g: HyperMLP(h, g, hidden=(8,)), eval_every_steps=5,
        jit_compile=False,
    )  # fmt: skip
    values = {"input_dropout": 0.1, "input_noise": 0.2, "dropout_1": 0.3}
    trainer.fixed.reset(0, values)
    before = [v.numpy() for v in trainer.fixed.model.hyper_weights]
    run = trainer.run(values, 10, 0)
    expected = [spec.space.inverse(values[spec.name]) for spec in specs]
    np.testing.assert_allclose(trainer.fixed.network_input(2).numpy(), [expected, expected])
    after = [v.numpy() for v in trainer.fixed.model.hyper_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert np.isfinite(run.metrics["valid_loss"]).all()
    plain = _trainer(small_task)  # a plain model holds values at a bound (grid points start there)
    plain.run({**values, "input_dropout": 0.0}, 5, 0)
    assert plain.fixed.network_input(2) is None


def test_a_fixed_run_shares_stns_loop_and_seeding(small_task):
    """One compiled chunk serves every trial, and a trial starts from the weights an STN run
    with the same seed starts from (the stream ``init_seed(seed)``)."""
    trainer = _trainer(small_task)
    values = {"input_dropout": 0.1, "input_noise": 0.2, "dropout_1": 0.3}
    trainer.run(values, 10, 4)
    trainer.fixed.reset(5, values)
    expected = trainer.fixed.model_fn(3, stream(5, init_seed))
    for got, want in zip(trainer.fixed.model.weights, expected.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    trainer.run(values, 10, 5)
    assert trainer.trainer.trace_count == 1
    assert trainer.fixed.hyperparameters.values().numpy().tolist() == [0.1, 0.2, 0.3]


def test_grid_and_random_points():
    specs = classification_specs(2)
    grid = grid_points(specs, 27)
    assert len(grid) == 27 and all(p["dropout_1"] == p["dropout_2"] for p in grid)
    assert sorted({p["input_noise"] for p in grid}) == pytest.approx([0.0, 0.5 / 3, 1.0 / 3])
    points = random_points(specs, 5, seed=3)
    assert points == random_points(specs, 5, seed=3) and len(points) == 5
    assert all(0 <= p["dropout_2"] <= 0.9 and 0 <= p["input_noise"] <= 0.5 for p in points)
    with pytest.raises(ValueError, match="n_trials=0"):
        grid_points(specs, 0)


def test_search_counts_steps_and_keeps_the_best(small_task):
    trainer = _trainer(small_task)
    points = grid_points(classification_specs(1), 2)
    result = search(trainer, points, 10, seed=0)
    assert result.total_steps == 20 and len(result.runs) == 2
    assert result.best()["valid_loss"] == min(r.best()["valid_loss"] for r in result.runs)
    steps, loss = result.curve()
    assert steps[-1] == 20 and np.all(np.diff(loss) <= 0)


def test_optuna_study_resumes_from_its_sqlite_storage(small_task, tmp_path):
    trainer = _trainer(small_task)
    specs = classification_specs(1)
    storage = f"sqlite:///{tmp_path}/study.db"
    first = tpe_search(trainer, specs, 2, 10, seed=0, storage=storage, study_name="s")
    resumed = tpe_search(trainer, specs, 3, 10, seed=0, storage=storage, study_name="s")
    assert [r.values for r in resumed.runs[:2]] == [r.values for r in first.runs]
    np.testing.assert_array_equal(
        resumed.runs[0].metrics["valid_loss"], first.runs[0].metrics["valid_loss"]
    )
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 3  # the two stored trials were not run again
    assert resumed.total_steps == 30
    with pytest.raises(ValueError, match="storage='study.db'"):
        tpe_search(trainer, specs, 1, 10, storage="study.db")


def test_optuna_study_without_storage_writes_no_file(small_task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tpe_search(_trainer(small_task), classification_specs(1), 2, 10, seed=0)
    assert len(result.runs) == 2
    assert list(tmp_path.iterdir()) == []  # no SQLite file in the current folder


# -- the comparison ------------------------------------------------------------------------------


def _result(method: str, loss: float, steps: int) -> MethodResult:
    best = {"valid_loss": loss, "valid_accuracy": 0.9, "test_loss": loss, "test_accuracy": 0.9}
    return MethodResult(method, best, steps, 1.0, np.array([steps]), np.array([loss]))


def test_claim_and_summary():
    results = {"stn": _result("stn", 0.10, 100)}
    results.update(
        {
            m: _result(m, loss, 1000)
            for m, loss in (("grid", 0.12), ("random", 0.11), ("tpe", 0.2), ("halving", 0.13))
        }
    )
    c = Comparison(0, results, trajectory=None, warmup_steps=10, steps_per_cycle=3)
    claim = c.claim()
    assert claim["best_search"] == "random" and claim["as_good"] and claim["cheap"]
    assert claim["step_fraction"] == pytest.approx(0.1)
    rows = summary([c, c])
    assert [r["method"] for r in rows] == ["stn", "grid", "random", "tpe", "halving"]
    assert rows[0]["valid_loss"] == pytest.approx(0.10) and rows[0]["valid_loss_std"] == 0.0


def _seeds(stn_losses, baselines):
    """One comparison per seed: STN's loss and each baseline's ({method: losses})."""
    comparisons = []
    for seed, loss in enumerate(stn_losses):
        results = {"stn": _result("stn", loss, 100)}
        results.update({m: _result(m, losses[seed], 1000) for m, losses in baselines.items()})
        comparisons.append(Comparison(seed, results, None, warmup_steps=10, steps_per_cycle=3))
    return comparisons


def test_paired_difference_against_each_method_and_the_best_search():
    comparisons = _seeds(
        [0.10, 0.20, 0.30],
        {"grid": [0.15, 0.10, 0.35], "random": [0.30, 0.30, 0.30], "tpe": [0.11, 0.25, 0.20],
         "halving": [0.4, 0.4, 0.4]},
    )  # fmt: skip
    grid = paired_difference(comparisons, "valid_loss", "grid")
    assert grid["differences"] == pytest.approx([-0.05, 0.10, -0.05])
    assert grid["mean"] == pytest.approx(0.0) and grid["as_good"] == 2 and grid["seeds"] == 3
    best = paired_difference(comparisons)  # per seed: tpe, grid, tpe
    assert best["differences"] == pytest.approx([-0.01, 0.10, 0.10])
    assert best["as_good"] == 1
    low, high = best["interval_95"]
    assert -0.01 - 1e-12 <= low <= best["mean"] <= high <= 0.10 + 1e-12  # within the extremes


def test_bootstrap_interval_is_seeded_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.0, 1.0, 5), rng.normal(0.0, 1.0, 200)
    assert bootstrap_interval(few) == bootstrap_interval(few.copy())  # the same numbers again
    width = [high - low for low, high in (bootstrap_interval(few), bootstrap_interval(many))]
    assert width[1] < width[0] / 3
    low, high = bootstrap_interval(many)
    assert low < many.mean() < high and low < 0 < high  # covers the true mean 0 here
    assert bootstrap_interval(np.array([0.5])) is None
    assert bootstrap_interval(np.array([0.2, 0.2])) == (0.2, 0.2)


def test_the_table_has_each_baselines_paired_difference_against_stn():
    comparisons = _seeds(
        [0.10, 0.20, 0.30],
        {"grid": [0.15, 0.10, 0.35], "random": [0.30, 0.30, 0.30], "tpe": [0.11, 0.25, 0.20],
         "halving": [0.4, 0.4, 0.4]},
    )  # fmt: skip
    rows = {r["method"]: r for r in summary(comparisons)}
    assert "valid_loss_difference" not in rows["stn"]
    assert rows["random"]["valid_loss_difference"] == pytest.approx(-0.10)
    assert rows["random"]["valid_loss_as_good"] == 3
    lines = markdown_table(list(rows.values())).splitlines()
    assert len(lines) == 2 + 5  # header, rule, one row per method
    stn_row, random_row = lines[2].split(" | "), lines[4].split(" | ")
    assert stn_row[3] == "—" and random_row[4] == "3 of 3"
    assert random_row[3].startswith("-0.1000 [")


def test_experiment_checks_its_budgets():
    with pytest.raises(ValueError, match="eval_every_steps=10"):
        RealDataExperiment(eval_every_steps=10)
    with pytest.raises(ValueError, match="model='resnet'"):
        RealDataExperiment(model="resnet")
    with pytest.raises(ValueError, match="trial_steps=8 must be at least 9"):
        RealDataExperiment(trial_steps=8)
    assert RealDataExperiment().stn_steps == 6000


@pytest.mark.parametrize("stn_cycles", [1800, 50, 25])
def test_the_stn_run_checkpoints_between_chunks_not_only_at_its_end(stn_cycles):
    """A real-data STN run is cut into chunks of whole evaluation intervals, so a checkpointed
    run resumes from its last chunk (it used to be one chunk: resumable only once finished)."""
    experiment = RealDataExperiment(stn_cycles=stn_cycles)
    config = experiment.stn_config()
    assert stn_cycles % config.chunk_cycles == 0 and config.chunk_cycles % config.eval_every == 0
    assert config.chunk_cycles <= 300
    if stn_cycles > config.eval_every:
        assert config.chunk_cycles < stn_cycles


@pytest.mark.parametrize("backend", BACKENDS)
def test_baseline_trials_give_the_same_numbers_on_two_workers(backend):
    """Trials dealt to two workers (spawned processes, or a local Ray instance of 2 CPUs that
    the pool starts and shuts down), each with its own compiled trainer, give the numbers of
    one process: grid, random, TPE asked in batches of 2, halving and the references."""
    experiment = RealDataExperiment(
        n_train=100, n_valid=100, warmup_steps=15, stn_cycles=5, trial_steps=30, n_trials=3,
        eval_every_steps=15, tpe_batch=2, pbt_population=2, pbt_interval_steps=15,
    )  # fmt: skip
    alone = run_seeds(experiment, [3], workers=1)[0]
    with WorkerPool(Workers(2, backend)) as pool:
        if backend == "ray":
            assert ray.cluster_resources()["CPU"] == 2
        spread = experiment.run(3, pool=pool)
    assert not ray.is_initialized()
    assert alone.results.keys() == spread.results.keys()
    for method, result in alone.results.items():
        other = spread.results[method]
        assert result.best == other.best, method
        np.testing.assert_array_equal(result.curve_loss, other.curve_loss, err_msg=method)


def test_the_grid_search_benchmark_times_each_precision_three_ways():
    """Six timings of one search (two precisions × one worker, two Ray workers, or one
    population of its trials): each row names its precision, workers, population and trials,
    Ray's start is timed apart (none in this process), the best trial does not depend on the
    workers at either precision and the population's is the same trial's to rounding, and the
    speed-ups are against the float64 trials one after another and the row's own precision."""
    from stn.experiments.benchmark import grid_search_benchmark

    experiment = RealDataExperiment(n_train=100, n_valid=100, trial_steps=30, n_trials=3)
    rows = grid_search_benchmark(experiment, workers=2)
    assert not ray.is_initialized()
    assert [(r["dtype"], r["workers"], r["population"], r["trials"]) for r in rows] == [
        ("float64", 1, 1, 3), ("float64", 2, 1, 3), ("float32", 1, 1, 3), ("float32", 2, 1, 3),
        ("float64", 1, 3, 3), ("float32", 1, 3, 3),
    ]  # fmt: skip
    assert rows[0]["speedup"] == rows[0]["speedup_same_dtype"] == rows[2]["speedup_same_dtype"] == 1
    for one, two, population in ((*rows[:2], rows[4]), (*rows[2:4], rows[5])):
        assert one["ray_start_seconds"] == population["ray_start_seconds"] == 0
        assert 0 < two["ray_start_seconds"]
        assert one["best_valid_loss"] == two["best_valid_loss"]
        tolerance = 1e-9 if one["dtype"] == "float64" else 1e-4
        assert population["best_valid_loss"] == pytest.approx(one["best_valid_loss"], abs=tolerance)
        for other in (two, population):
            assert other["speedup_same_dtype"] == pytest.approx(one["seconds"] / other["seconds"])
            assert other["speedup"] == pytest.approx(rows[0]["seconds"] / other["seconds"])


def test_tpe_asks_in_batches_and_refuses_a_bad_batch(small_task):
    class Recorder:
        """Trials that record how many points each call brings."""

        def __init__(self):
            self.trainer, self.calls = _trainer(small_task), []

        def run_trials(self, points, steps, seed):
            self.calls.append(len(points))
            return self.trainer.run_trials(points, steps, seed)

    trials = Recorder()
    result = tpe_search(trials, classification_specs(1), 5, 10, seed=0, batch=2)
    assert trials.calls == [2, 2, 1] and len(result.runs) == 5
    with pytest.raises(ValueError, match="batch=0 must be a positive integer"):
        tpe_search(trials, classification_specs(1), 1, 10, batch=0)


class Quadratic:
    """Trials whose loss is the distance of the dropout rate from 0.3, less with more steps;
    ``fail_after`` trials, it raises (an interrupted search)."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after, self.ran = [], fail_after, 0

    def run_trials(self, points, steps, seed):
        self.calls.append((len(points), steps))
        for point in points:
            if self.ran == self.fail_after:
                raise KeyboardInterrupt
            self.ran += 1
            loss = abs(point["dropout_1"] - 0.3) + 1.0 / steps + seed
            yield RunResult(dict(point), np.array([steps]), {"valid_loss": np.array([loss])}, 0)


def test_successive_halving_spends_the_searches_budget_and_promotes_the_best():
    trials, specs = Quadratic(), classification_specs(1)
    result = halving_search(trials, specs, n_trials=27, steps=900, seed=4)
    assert trials.calls == [(81, 100), (27, 300), (9, 900)]
    assert result.total_steps == 27 * 900  # the budget of 27 trials of 900 steps
    points = random_points(specs, 81, 4)
    distance = sorted(abs(p["dropout_1"] - 0.3) for p in points)
    final = sorted(abs(r.values["dropout_1"] - 0.3) for r in result.runs[-9:])
    assert final == pytest.approx(distance[:9])  # the 9 best points reached the last rung
    assert result.best()["dropout_1"] == pytest.approx(
        min(points, key=lambda p: abs(p["dropout_1"] - 0.3))["dropout_1"]
    )
    with pytest.raises(ValueError, match="eta=1 must be an integer >= 2"):
        halving_search(trials, specs, 27, 900, eta=1)
    with pytest.raises(ValueError, match="steps=5 must be at least"):
        halving_search(trials, specs, 27, 5)


def test_an_interrupted_search_resumes_from_its_optuna_storage(tmp_path):
    """Halving stopped in its second rung, run again on the same storage, trains only the
    trials still missing and gives the uninterrupted search's results; another seed's trials
    are not mistaken for its own."""
    specs, storage = classification_specs(1), f"sqlite:///{tmp_path}/trials.db"
    whole = halving_search(Quadratic(), specs, n_trials=27, steps=900, seed=4)
    with pytest.raises(KeyboardInterrupt):
        halving_search(StoredTrials(Quadratic(90), storage, "h"), specs, 27, 900, seed=4)
    again = Quadratic()
    resumed = halving_search(StoredTrials(again, storage, "h"), specs, 27, 900, seed=4)
    assert again.calls == [(27 - 9, 300), (9, 900)]  # 81 + 9 were stored
    assert [r.values for r in resumed.runs] == [r.values for r in whole.runs]
    assert [r.best() for r in resumed.runs] == [r.best() for r in whole.runs]
    other = Quadratic()
    halving_search(StoredTrials(other, storage, "h"), specs, 27, 900, seed=5)
    assert other.calls == [(81, 100), (27, 300), (9, 900)]
    assert len(optuna.load_study(study_name="h", storage=storage).trials) == 2 * (81 + 27 + 9)


def test_late_improvement_tells_a_flat_curve_from_one_still_learning():
    """Over the last third of the steps: a curve that stopped improving gains 0, one still
    falling gains its relative drop; the mean and the largest are over seeds."""
    steps = np.arange(1, 7) * 100.0

    def run(method, curve):
        return MethodResult(method, {}, 600, 1.0, steps, np.minimum.accumulate(curve))

    flat = np.array([1.0, 0.5, 0.4, 0.4, 0.41, 0.45])
    falling = np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.3])  # 0.5 at step 400, 0.3 at 600
    comparisons = [
        Comparison(seed, {m: run(m, curve) for m in SINGLE_RUNS}, None, 0, 3)
        for seed, curve in enumerate((flat, falling))
    ]
    result = late_improvement(comparisons)
    assert set(result) == set(SINGLE_RUNS)
    assert result["stn"]["mean"] == pytest.approx(0.4 / 2) and result["stn"]["max"] == 0.4
    assert late_improvement(comparisons[:1])["fixed_initial"] == {"mean": 0.0, "max": 0.0}
    with pytest.raises(ValueError, match="fraction=1.5"):
        late_improvement(comparisons, 1.5)


def test_a_finished_pbt_like_search_is_read_back_whole_and_an_unfinished_one_reruns(tmp_path):
    storage, calls = f"sqlite:///{tmp_path}/whole.db", []

    def search():
        calls.append(1)
        runs = list(Quadratic().run_trials(random_points(classification_specs(1), 3, 0), 9, 0))
        return SearchResult("pbt", runs)

    first = stored_search(search, storage, "p")
    again = stored_search(search, storage, "p")
    assert len(calls) == 1 and again.method == "pbt"
    assert [r.best() for r in again.runs] == [r.best() for r in first.runs]
    optuna.delete_study(study_name="p", storage=storage)
    study = optuna.create_study(study_name="p", storage=storage)  # interrupted while stored
    attrs = {"method": "pbt", "of": 3, "run": first.runs[0].to_dict()}
    study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs=attrs))
    resumed = stored_search(search, storage, "p")
    assert len(calls) == 2 and len(resumed.runs) == 3
    assert len(optuna.load_study(study_name="p", storage=storage).trials) == 3


def _small(dtype: str) -> RealDataExperiment:
    return RealDataExperiment(
        n_train=100, n_valid=100, warmup_steps=15, stn_cycles=10, eval_every_steps=15,
        dtype=dtype, storage=None,
    )  # fmt: skip


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_dtype_reaches_the_data_the_model_and_the_hyperparameters(model):
    """A float32 experiment trains STN and the fixed runs in float32 throughout (data, weights,
    λ, s, the perturbation: its random draws are float32 draws, so another sample); its records
    stay float64 and a seed still fixes its numbers. Given the float64 run's weights, it
    evaluates to the same numbers, rounded coarser."""
    stns = {}
    for dtype in ("float32", "float64"):
        experiment = dataclasses.replace(_small(dtype), model=model)
        trainer = experiment.stn_trainer(0, experiment.data(0))
        stn, want = trainer.stn, tf.as_dtype(dtype)
        assert stn.task.dtype == stn.hyperparameters.dtype == want
        assert {v.dtype for v in (*stn.model.weights, stn.hyperparameters.scale)} == {want}
        first = trainer.run()
        assert first.values.dtype == first.metrics["valid_loss"].dtype == np.float64
        trainer.reset(0)
        np.testing.assert_array_equal(
            first.metrics["valid_loss"], trainer.run().metrics["valid_loss"]
        )
        fixed = experiment.fixed_trainer(0, hyper=True)
        assert {v.dtype for v in fixed.fixed.model.weights} == {want}
        point = {s: 0.1 for s in fixed.fixed.hyperparameters.names}
        assert np.isfinite(fixed.run(point, 30, 0).metrics["valid_loss"]).all()
        stns[dtype] = stn
    single, double = stns["float32"], stns["float64"]
    for mine, theirs in zip(single.model.weights, double.model.weights, strict=True):
        mine.assign(tf.cast(theirs, tf.float32))
    single.hyperparameters.unconstrained.assign(
        tf.cast(double.hyperparameters.unconstrained, tf.float32)
    )
    (metrics32, _), (metrics64, _) = single.evaluate(), double.evaluate()
    for name, value in metrics64.items():
        np.testing.assert_allclose(float(metrics32[name]), float(value), rtol=1e-5, err_msg=name)


def test_a_precision_outside_the_list_or_a_model_at_another_is_refused(digits):
    with pytest.raises(ValueError, match=r"dtype='float16' is not allowed; choose one of"):
        _small("float16")
    specs = classification_specs(2)
    with pytest.raises(ValueError, match="dtype='int32' must be a floating-point type"):
        ClassificationTask(digits, [s.name for s in specs], dtype=tf.int32)
    task = ClassificationTask(digits, [s.name for s in specs], dtype=tf.float32)
    with pytest.raises(ValueError, match="float64 weights for a float32 task: allowed is float32"):
        STN(task, specs, lambda n, g: HyperMLP(n, g))


def test_population_groups_are_balanced_and_keep_the_order():
    from stn.experiments.real_data import population_groups

    assert population_groups(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert population_groups(list(range(27)), 27) == [list(range(27))]
    assert [len(g) for g in population_groups(list(range(81)), 27)] == [27, 27, 27]
    assert [len(g) for g in population_groups(list(range(28)), 27)] == [14, 14]
    with pytest.raises(ValueError, match="trial_population=0 must be a positive integer"):
        RealDataExperiment(trial_population=0)


def test_a_studys_population_trials_are_its_single_trials():
    """With trial_population, a search's trials run as populations in this process; each is
    the single trial its point gives on the workers (float64, to 1e-9)."""
    from stn.experiments.baselines import random_points
    from stn.experiments.real_data import PopulationTrials, TrialPool

    experiment = RealDataExperiment(
        n_train=100, n_valid=100, trial_steps=30, eval_every_steps=15, dtype="float64",
        trial_population=2,
    )  # fmt: skip
    _, specs = experiment.problem(experiment.data(3))
    points = random_points(specs, 3, seed=1)
    together = list(PopulationTrials(experiment).run_trials(points, 30, 3))
    alone = list(TrialPool(experiment, WorkerPool()).run_trials(points, 30, 3))
    assert len(together) == len(alone) == 3
    for a, b in zip(together, alone, strict=True):
        assert a.values == b.values
        np.testing.assert_array_equal(a.steps, b.steps)
        for key, series in b.metrics.items():
            np.testing.assert_allclose(a.metrics[key], series, rtol=0, atol=1e-9)
