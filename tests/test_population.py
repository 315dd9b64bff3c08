"""The population axis: P runs in one compiled program, each member the single run of its seed."""

import numpy as np
import pytest
import tensorflow as tf

from stn.experiments import toy
from stn.method.population import PopulationGenerator, check_seeds
from stn.tasks.toy import x_range_spec

SEEDS = (3, 8)


def _experiment(name: str = "default", **settings) -> toy.ToyExperiment:
    settings = {"max_cycles": 200, "target": None, "chunk_cycles": 100, **settings}
    return toy.variant(name, snapshot_every=100, **settings)


def _state(stn) -> list[tf.Variable]:
    """Weights, hyperparameters, scales and the optimizers' slots: everything per member."""
    slots = [v for opt in stn.optimizers for vs in opt.slots.values() for v in vs]
    return [*stn.trainable_variables, *slots]


def _close(member, single, tol: float = 1e-9) -> None:
    assert member.cycles == single.cycles and member.stopped == single.stopped
    for key in ("values", "stddev", "weight_loss", "hyper_loss", "snapshots"):
        np.testing.assert_allclose(getattr(member, key), getattr(single, key), rtol=0, atol=tol)
    for key, series in single.metrics.items():
        np.testing.assert_allclose(member.metrics[key], series, rtol=0, atol=tol)
    np.testing.assert_array_equal(member.eval_cycles, single.eval_cycles)


@pytest.mark.parametrize("name", ["default", "per-layer scale", "delta-stn"])
def test_a_member_is_the_single_run_of_its_seed(name):
    experiment = _experiment(name)
    members = experiment.build(SEEDS).run()
    single = experiment.build(SEEDS[0])
    for seed, member in zip(SEEDS, members, strict=True):
        single.reset(seed)
        _close(member, single.run())


def test_members_stop_on_their_own_and_stay_where_they_stopped():
    """With a target, each member stops at the single run's cycle; a stopped member's weights,
    hyperparameters and optimizer slots stay as they were while the others train on."""
    experiment = _experiment(target=0.9, max_cycles=400)
    singles = []
    for seed in SEEDS:
        trainer = experiment.build(seed)
        singles.append((trainer.run(), [v.numpy() for v in _state(trainer.stn)]))
    assert singles[0][0].cycles != singles[1][0].cycles  # the test needs different stops
    population = experiment.build(SEEDS)
    members = population.run()
    for j, (member, (single, variables)) in enumerate(zip(members, singles, strict=True)):
        assert member.stopped and single.stopped
        _close(member, single)
        now = [v.numpy()[j] for v in _state(population.stn)]
        for a, b in zip(now, variables, strict=True):
            np.testing.assert_allclose(a.reshape(b.shape), b, rtol=0, atol=1e-9)
    assert not population.stn.mask.active.numpy().any()


def test_a_population_resumes_from_one_checkpoint(tmp_path):
    experiment = _experiment(max_cycles=300)
    first = experiment.build(SEEDS)
    whole = first.run()
    first.reset(SEEDS)
    first.run(max_cycles=100, checkpoint_dir=tmp_path)  # then the process "crashes"
    resumed = experiment.build(SEEDS).run(checkpoint_dir=tmp_path)
    for a, b in zip(resumed, whole, strict=True):
        _close(a, b, tol=0)


def test_reset_restarts_every_member_and_refuses_the_wrong_seeds():
    trainer = _experiment(max_cycles=50, jit_compile=False).build(SEEDS)
    first = trainer.run()
    trainer.reset(SEEDS)
    for a, b in zip(trainer.run(), first, strict=True):
        _close(a, b, tol=0)
    for bad in (3, (3,), (3, 3)):
        with pytest.raises(ValueError, match="seed"):
            trainer.reset(bad)


def test_a_population_generator_draws_each_members_stream():
    population = PopulationGenerator([10, 20])
    for _ in range(2):  # and again after a restart
        draws = population.normal([4, 2], dtype=tf.float64).numpy()
        for seed, draw in zip([10, 20], draws, strict=True):
            expected = tf.random.Generator.from_seed(seed).normal([4, 2], dtype=tf.float64)
            np.testing.assert_array_equal(draw, expected.numpy())
        population.reset_from_seed([10, 20])


@pytest.mark.parametrize("seeds", [(), 3, "ab", (1, 1), (-1,), (1.5,)])
def test_bad_seeds_are_named(seeds):
    with pytest.raises(ValueError, match="seeds="):
        check_seeds(seeds)


def test_a_task_without_population_support_is_refused():
    from stn.method.stn import STN

    class Plain:
        stop_metric = "loss"

    with pytest.raises(ValueError, match="does not run a population"):
        STN(Plain(), [x_range_spec()], lambda n, g: None, seed=(1, 2))


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_a_classifier_member_is_the_single_run_of_its_seed(architecture):
    """The classification task with every augmentation, dropout per block and a tuned weight
    decay, on the hyper MLP and the hyper CNN: each member of a population is the single run of
    its seed."""
    from stn.method.models import HyperCNN, HyperMLP
    from stn.method.stn import STN, STNConfig
    from stn.tasks.classification import ClassificationTask, classification_specs, load_dataset
    from stn.training.loop import Trainer

    def model(n_hyper, generator):
        if architecture == "mlp":
            return HyperMLP(n_hyper, generator, hidden=(32, 32))
        return HyperCNN(n_hyper, generator, channels=(4, 8), dense_units=16)

    data = load_dataset("digits", 0, n_train=300, n_valid=100)
    n_dropout = model(1, tf.random.Generator.from_seed(0)).n_dropout
    specs = classification_specs(n_dropout, weight_decay=1e-4)
    task = ClassificationTask(data, [s.name for s in specs], batch_size=16, valid_batch_size=20)
    config = STNConfig(max_cycles=40, target=None, chunk_cycles=20, snapshot_every=20)
    members = Trainer(STN(task, specs, model, config, seed=SEEDS)).run()
    single = Trainer(STN(task, specs, model, config, seed=SEEDS[0]))
    for seed, member in zip(SEEDS, members, strict=True):
        single.reset(seed)
        _close(member, single.run())


def test_large_populations_are_timed_on_runs_of_fewer_cycles():
    """Beyond ``full_members`` members the benchmark's runs are shortened to about that many
    members' worth of member-cycles, a whole number of the workload's unit, at least one."""
    from stn.experiments.benchmark import ClassifierWorkload, ToyWorkload, cycles_at
    from stn.experiments.real_data import RealDataExperiment

    toy_runs = ToyWorkload(_experiment(), 1000)
    assert [cycles_at(toy_runs, p, 8) for p in (1, 8, 16, 64, 9000)] == [1000, 1000, 500, 125, 1]
    assert cycles_at(toy_runs, 64, None) == 1000
    mlp_runs = ClassifierWorkload(RealDataExperiment(), 250)
    assert [cycles_at(mlp_runs, p, 8) for p in (8, 16, 32, 64)] == [250, 125, 50, 25]


def test_the_population_benchmark_times_each_size_on_its_own_cycles():
    from stn.experiments.benchmark import ToyWorkload, population_benchmark

    workload = ToyWorkload(_experiment(jit_compile=False), 40)
    rows = population_benchmark(workload, [1, 2, 4], repeats=1, workers=1, full_members=2)
    assert [(r["members"], r["cycles"]) for r in rows] == [(1, 40), (2, 40), (4, 20)]
    assert rows[0]["gain"] == 1.0
    for row in rows:
        assert row["us_per_member_cycle"] > 0 and row["workers_us_per_member_cycle"] > 0


# -- a search's trials as a population: one seed, one point per member ----------------------------


def _trial_trainer(architecture: str, hyper: bool, members: int | None):
    """The classification task with every augmentation, dropout per block and weight decay, at
    float64, trained at fixed values (plain network, or the hypernetwork reading λ)."""
    from stn.experiments.baselines import FixedTrainer
    from stn.method.models import HyperCNN, HyperMLP
    from stn.tasks.classification import ClassificationTask, classification_specs, load_dataset

    def model(n_hyper, generator):
        if architecture == "mlp":
            return HyperMLP(n_hyper, generator, hidden=(32, 32), hyper=hyper)
        return HyperCNN(n_hyper, generator, channels=(4, 8), dense_units=16, hyper=hyper)

    data = load_dataset("digits", 0, n_train=300, n_valid=100)
    n_dropout = model(1, tf.random.Generator.from_seed(0)).n_dropout
    specs = classification_specs(n_dropout, weight_decay=1e-4)
    task = ClassificationTask(data, [s.name for s in specs], batch_size=16, valid_batch_size=20)
    trainer = FixedTrainer(task, specs, model, eval_every_steps=20, members=members)
    return trainer, specs


@pytest.mark.parametrize(("architecture", "hyper"), [("mlp", False), ("mlp", True), ("cnn", False)])
def test_a_trial_member_is_the_single_trial_of_its_point(architecture, hyper):
    """Three points through a population of two (the second group filled up with a copy of its
    point): each result is the single trial of its point and seed, evaluation after the last,
    unfinished interval included (float64, to 1e-9)."""
    from stn.experiments.baselines import random_points

    population, specs = _trial_trainer(architecture, hyper, members=2)
    single, _ = _trial_trainer(architecture, hyper, members=None)
    points = random_points(specs, 3, seed=4)
    members = list(population.run_trials(points, 50, seed=7))
    assert len(members) == 3
    for point, member in zip(points, members, strict=True):
        alone = single.run(point, 50, seed=7)
        assert member.values == alone.values
        np.testing.assert_array_equal(member.steps, [20, 40, 50])
        np.testing.assert_array_equal(member.steps, alone.steps)
        for key, series in alone.metrics.items():
            np.testing.assert_allclose(member.metrics[key], series, rtol=0, atol=1e-9)
    assert not np.allclose(members[0].metrics["valid_loss"], members[1].metrics["valid_loss"])


def test_a_trial_population_checks_its_points():
    population, specs = _trial_trainer("mlp", False, members=2)
    point = {s.name: s.initial for s in specs}
    with pytest.raises(ValueError, match="values has 1 points for 2 members"):
        population.run([point], 20, 0)
    with pytest.raises(ValueError, match="seed=-1 must be an integer >= 0"):
        population.run([point, point], 20, -1)


def test_members_that_share_a_seed_share_one_stream():
    """Trials of one seed draw from one stream, once for all of them; members of other seeds
    keep their own, and a restart must repeat the seeds where they repeated."""
    population = PopulationGenerator([10, 10, 20, 10])
    assert len(population) == 4 and len(population.members) == 2
    for _ in range(2):  # and again after a restart
        draws = population.uniform([3, 2], dtype=tf.float64).numpy()
        for seed, draw in zip([10, 10, 20, 10], draws, strict=True):
            expected = tf.random.Generator.from_seed(seed).uniform([3, 2], dtype=tf.float64)
            np.testing.assert_array_equal(draw, expected.numpy())
        population.reset_from_seed([10, 10, 20, 10])
    population.reset_from_seed([5, 5, 6, 5])  # the same pattern, other seeds
    with pytest.raises(ValueError, match="repeated where"):
        population.reset_from_seed([5, 6, 6, 5])
    shared = PopulationGenerator([3, 3, 3])
    np.testing.assert_array_equal(
        shared.normal([2]).numpy(),
        np.broadcast_to(tf.random.Generator.from_seed(3).normal([2]).numpy(), [3, 2]),
    )


def test_a_plain_population_decays_each_members_own_kernels():
    """Weight decay of a plain population: each member's ‖W‖², not the population's sum."""
    from stn.method.models import HyperMLP

    population = HyperMLP(1, PopulationGenerator([1, 2]), hidden=(8,), hyper=False)
    norms = population.squared_kernel_norm(None).numpy()
    assert norms.shape == (2, 1)
    for j, seed in enumerate([1, 2]):
        single = HyperMLP(1, tf.random.Generator.from_seed(seed), hidden=(8,), hyper=False)
        assert population.members == 2 and single.members is None
        np.testing.assert_allclose(norms[j, 0], single.squared_kernel_norm(None).numpy())


def test_the_trial_workload_times_a_searchs_trials():
    from stn.experiments.benchmark import TrialWorkload, population_benchmark
    from stn.experiments.real_data import RealDataExperiment

    workload = TrialWorkload(RealDataExperiment(n_train=200, n_valid=100), 75)
    assert workload.name == "mlp trials" and workload.unit == 75
    rows = population_benchmark(workload, [1, 2], repeats=1, workers=1)
    assert [(r["members"], r["cycles"]) for r in rows] == [(1, 75), (2, 75)]
    assert all(r["us_per_member_cycle"] > 0 for r in rows)
