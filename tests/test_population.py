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
