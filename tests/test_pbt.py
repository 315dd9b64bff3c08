"""Population Based Training on Ray Tune: a member's state survives its checkpoint, and the
search follows from its seed alone, on one worker or two."""

import functools
import os

import numpy as np
import pytest
import ray
from ray.train._internal.storage import StorageContext

from stn.experiments import pbt, real_data
from stn.experiments.baselines import bounds
from stn.experiments.pbt import check_pbt, pbt_search
from stn.experiments.real_data import RealDataExperiment
from stn.experiments.workers import Workers, ray_session

EXPERIMENT = RealDataExperiment(
    n_train=100, n_valid=100, warmup_steps=15, stn_cycles=5, trial_steps=30, n_trials=3,
    eval_every_steps=15, pbt_population=4, pbt_interval_steps=15,
)  # fmt: skip
SEED = 3


def test_a_trainer_resumes_from_its_saved_state_bit_for_bit(tmp_path):
    """What a PBT member's checkpoint holds (weights, optimizer slots, noise) is all the
    training state: training on from a restored state repeats the steps exactly."""
    trainer = EXPERIMENT.fixed_trainer(SEED)
    _, specs = EXPERIMENT.problem(EXPERIMENT.data(SEED))
    values = {s.name: s.initial for s in specs}
    trainer.run(values, 30, SEED)
    trainer.state().write(str(tmp_path / "state"))
    on = trainer.train_on(values, 30)
    trainer.run({**values, "dropout_1": 0.5}, 45, SEED + 1)  # elsewhere in the meantime
    trainer.state().read(str(tmp_path / "state")).assert_consumed()
    again = trainer.train_on(values, 30)
    np.testing.assert_array_equal(on.metrics["valid_loss"], again.metrics["valid_loss"])
    assert list(on.steps) == [15, 30]


def test_pbt_follows_its_seed_on_one_worker_or_two():
    """Synchronous, seeded PBT: the same rounds on a local Ray of 1 CPU and of 2 (each started
    and shut down by the search); every round is recorded, every value stays in its range, and
    the worst members explored away from their start."""
    _, specs = EXPERIMENT.problem(EXPERIMENT.data(SEED))
    trainer = functools.partial(real_data.cached_trainer, EXPERIMENT, SEED, False)
    population, rounds = 4, 3
    results = [
        pbt_search(trainer, specs, population, 15, rounds, SEED, Workers(w, "ray")) for w in (1, 2)
    ]
    assert not ray.is_initialized()
    one, two = (r.runs for r in results)
    assert len(one) == population * rounds and results[0].total_steps == population * rounds * 15
    for a, b in zip(one, two, strict=True):
        assert a.values == b.values
        np.testing.assert_array_equal(a.metrics["valid_loss"], b.metrics["valid_loss"])
    limits = {s.name: bounds(s) for s in specs}
    assert all(limits[n][0] <= v <= limits[n][1] for r in one for n, v in r.values.items())
    starts, last = [r.values for r in one[:population]], [r.values for r in one[-population:]]
    assert sum(a != b for a, b in zip(starts, last, strict=True)) >= 1  # someone explored
    assert results[0].best() == min(
        (r.best() | r.values for r in one), key=lambda b: b["valid_loss"]
    )


def test_pbt_refuses_bad_settings():
    with pytest.raises(ValueError, match="population=1 must be an integer >= 2"):
        check_pbt(1, 10, 2)
    with pytest.raises(ValueError, match="interval=0 must be a positive integer"):
        check_pbt(4, 0, 2)
    with pytest.raises(ValueError, match=r"pbt_population=100 × pbt_interval_steps=600 exceeds"):
        RealDataExperiment(pbt_population=100).check_pbt_budget()


def test_a_member_stores_each_round_apart_even_when_tunes_count_lags(tmp_path, monkeypatch):
    """Tune numbers stored checkpoints from its driver's count, which lags a member that resumes
    before its last save is registered. A member names them by round, so round 2's save cannot
    overwrite round 1's, which an exploiting member may still restore."""
    monkeypatch.setattr(pbt, "limit_threads", lambda threads: None)  # TF already runs here
    _, specs = EXPERIMENT.problem(EXPERIMENT.data(SEED))
    config = {
        "trainer": functools.partial(real_data.cached_trainer, EXPERIMENT, SEED, False),
        "point": {s.name: s.initial for s in specs}, "seed": SEED, "interval": 15, "threads": 1,
    }  # fmt: skip
    with ray_session(Workers(1, "ray")):  # Tune's storage lives in a Ray session
        storage = StorageContext(str(tmp_path), "experiment", trial_dir_name="member")
        member = pbt.Member(config, storage=storage)
        member.train()
        round_one = member.save().checkpoint
        storage.current_checkpoint_index = -1  # the driver has not registered that save yet
        round_two = member.train()["valid_loss"]
        assert member.save().checkpoint.path != round_one.path
        stored = sorted((tmp_path / "experiment" / "member").glob("checkpoint_*"))
        assert [p.name for p in stored] == ["checkpoint_000001", "checkpoint_000002"]
        member.restore(round_one)
        assert member.train()["valid_loss"] == round_two


def test_pbt_keeps_its_member_processes_across_rounds(tmp_path):
    """Every synchronous round pauses every member. Tune keeps a paused member's actor for the
    next member only while the search is open, so the search stays open until all members are
    done: the rounds run in the same few processes instead of a fresh one (a TensorFlow import
    and a compile) per round."""
    log = tmp_path / "processes"

    def trainer():  # a closure: Ray pickles it whole, so it needs no importable module
        with log.open("a") as file:
            file.write(f"{os.getpid()}\n")
        return real_data.cached_trainer(EXPERIMENT, SEED, False)

    _, specs = EXPERIMENT.problem(EXPERIMENT.data(SEED))
    workers, rounds = 2, 6  # five members on two workers: every round, one member waits
    pbt_search(trainer, specs, 5, 15, rounds, SEED, Workers(workers, "ray"))
    processes = set(log.read_text().split())
    assert len(processes) <= workers + 1 < rounds
