import logging
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from stn.experiments.toy import ToyExperiment, variant
from stn.method.models import ToyHyperNet
from stn.method.stn import STNConfig
from stn.training.record import DivergenceError
from stn.training.summaries import SummaryLog

SMALL = dict(max_cycles=60, chunk_cycles=20, snapshot_every=10, target=None)
ALIVE = dict(activation="tanh", jit_compile=False, **SMALL)  # no dead units: every weight moves


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables, strict=True)]


@pytest.fixture(scope="module")
def trainer():
    return ToyExperiment(**ALIVE).build()


def test_weight_step_moves_only_the_weights(trainer):
    hp, model = trainer.hyperparameters, trainer.model
    weights, hyper = snapshot(model.weights), snapshot([hp.unconstrained, hp.scale])
    trainer.stn.weight_step()
    assert all(changed(weights, model.weights))
    assert not any(changed(hyper, [hp.unconstrained, hp.scale]))


def test_hyper_step_moves_only_lambda_and_scale(trainer):
    hp, model = trainer.hyperparameters, trainer.model
    weights, hyper = snapshot(model.weights), snapshot([hp.unconstrained, hp.scale])
    trainer.stn.hyper_step()
    assert not any(changed(weights, model.weights))
    assert all(changed(hyper, [hp.unconstrained, hp.scale]))


def test_a_compiled_cycle_is_its_steps_one_after_another():
    """The cycle loops over its steps in-graph: T_train weight steps then T_valid hyper steps,
    the same numbers as calling them one by one, looped or unrolled."""
    stn = ToyExperiment(train_steps=3, valid_steps=2, **ALIVE).build().stn
    hp = stn.hyperparameters
    state = [*stn.model.weights, hp.unconstrained, hp.scale]
    stn.reset(5)
    for _ in range(3):
        stn.weight_step()
    for _ in range(2):
        stn.hyper_step()
    by_hand = snapshot(state)
    for unroll in (False, True):
        stn.config = replace(stn.config, unroll_steps=unroll)
        stn.reset(5)
        tf.function(stn.cycle)()
        for got, want in zip(snapshot(state), by_hand, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_zero_initialised_response_gives_no_hypergradient():
    """Centered input, V = C = 0: F does not depend on λ, so only the entropy moves s (up)."""
    t = variant("centered + split step", **ALIVE).build()
    hp = t.hyperparameters
    lam, s = hp.unconstrained.numpy().copy(), hp.scale.numpy().copy()
    t.stn.hyper_step()
    np.testing.assert_array_equal(hp.unconstrained.numpy(), lam)
    assert hp.scale.numpy()[0] > s[0]


def test_split_step_trains_general_weights_at_unperturbed_lambda():
    """With the split step, the elementary weights' step ignores ε: two trainers whose noise
    differs only in the perturbation give the same elementary update when V = C = 0."""
    t = variant("centered + split step", **ALIVE).build()
    before = snapshot(t.model.elementary_weights)
    t.stn.weight_step()
    after = snapshot(t.model.elementary_weights)
    t2 = variant("centered + split step", scale_init=3.0, **ALIVE).build()
    t2.stn.weight_step()
    # same batch, different ε scale: general weights see the same loss at λ
    for a, b, c in zip(before, after, snapshot(t2.model.elementary_weights), strict=True):
        assert not np.array_equal(a, b)
        np.testing.assert_allclose(b, c, rtol=1e-12)


def test_run_records_trajectories_and_does_not_retrace():
    t = ToyExperiment(**SMALL).build()
    first = t.run()
    assert first.cycles == 60 and first.values.shape == (60, 1)
    assert first.metrics["distance"].shape == (60,)
    assert first.snapshots.shape == (6, 100)
    np.testing.assert_array_equal(first.snapshot_cycles, np.arange(10, 61, 10))
    t.reset(0)
    second = t.run()
    assert t.trace_count == 1  # three chunks per run, two runs, one trace
    np.testing.assert_array_equal(first.values, second.values)  # reset(seed) restarts exactly


def test_many_trainers_do_not_set_off_the_retracing_warning():
    """Each trainer traces its own program once; TensorFlow's warning about frequent retracing
    (which counts traces per code object) must not fire when a study builds many of them."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        for seed in range(7):
            ToyExperiment(**{**SMALL, "seed": seed, "jit_compile": False}).build().run(20)
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "retracing" in r.getMessage()]


def test_seed_fixes_the_run_whatever_the_chunking():
    a = ToyExperiment(seed=3, **SMALL).build().run()
    b = ToyExperiment(seed=3, **{**SMALL, "chunk_cycles": 30, "snapshot_every": 10}).build().run()
    c = ToyExperiment(seed=4, **SMALL).build().run()
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.metrics["distance"], b.metrics["distance"])
    assert not np.array_equal(a.values, c.values)


def test_stops_in_graph_at_the_target():
    t = ToyExperiment(**{**SMALL, "target": 1e6}).build()  # any distance is below the target
    trajectory = t.run()
    assert trajectory.cycles == 1 and trajectory.stopped


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(train_steps=0), "train_steps=0 must be a positive integer"),
        (dict(weight_lr=-1.0), "weight_lr=-1.0 must be a positive finite number"),
        (dict(hyper_optimizer="adamw"), "hyper_optimizer='adamw' is not allowed"),
        (dict(chunk_cycles=100, snapshot_every=30), "snapshot_every=30 must divide"),
        (dict(weight_step="split"), "weight_step=.split. needs hypernet_input=.centered."),
        (dict(target=0.0), "target=0.0 must be positive or None"),
        (dict(unroll_steps="yes"), "unroll_steps=.yes. must be True or False"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        STNConfig(**kwargs)


def test_bad_experiment_parameters():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['batch_sise'\]"):
        ToyExperiment.from_parameters(batch_sise=10)
    with pytest.raises(ValueError, match="variant='fancy' is unknown"):
        variant("fancy")
    with pytest.raises(ValueError, match="seed=-1"):
        ToyExperiment(seed=-1)


@pytest.mark.parametrize("field", ["depth", "width"])
def test_toy_hypernet_refuses_a_bool_for_a_count(field):
    with pytest.raises(ValueError, match=f"{field}=True must be a positive integer"):
        ToyHyperNet(**{field: True}, n_hyper=1, generator=tf.random.Generator.from_seed(0))


def test_config_refuses_a_bool_for_warmup_steps():
    with pytest.raises(ValueError, match="warmup_steps=True"):
        STNConfig(warmup_steps=True)


def test_compile_seconds_count_only_the_chunks_that_compiled(tmp_path):
    experiment = ToyExperiment(**ALIVE)
    trainer = experiment.build()
    first = trainer.run()
    assert first.extra["compile_seconds"] > 0
    trainer.reset(1)
    assert trainer.run().extra["compile_seconds"] == 0.0  # reused: nothing compiled
    checkpoints = tmp_path / "run"
    experiment.build().run(max_cycles=20, checkpoint_dir=checkpoints)
    resumed = experiment.build().run(checkpoint_dir=checkpoints)  # a new trainer compiles
    assert resumed.cycles == ALIVE["max_cycles"] and resumed.extra["compile_seconds"] > 0


def test_summary_writer_is_closed_when_a_run_diverges(tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(SummaryLog, "close", lambda self: closed.append(self))
    trainer = ToyExperiment(**{**ALIVE, "weight_lr": 1e200}).build()
    with pytest.raises(DivergenceError):
        trainer.run(log_dir=tmp_path)
    assert len(closed) == 1
