"""Runs dealt to worker processes give the numbers they give in one process."""

import dataclasses
import operator

import numpy as np
import pytest

from stn.experiments import robustness, toy
from stn.experiments.workers import BACKENDS, Workers, map_runs, split

SMALL = dict(max_cycles=60, chunk_cycles=20, snapshot_every=10, target=None)


def test_map_runs_keeps_the_order_of_its_arguments():
    arguments = [(2, k) for k in range(6)]
    assert map_runs(operator.pow, arguments, workers=2) == [1, 2, 4, 8, 16, 32]
    assert map_runs(operator.pow, arguments) == [1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize("workers", [0, 1.5, True, "2"])
def test_map_runs_refuses_a_bad_worker_count(workers):
    with pytest.raises(ValueError, match=rf"^workers={workers!r} is not allowed; it must be an"):
        map_runs(operator.pow, [(2, 1)], workers=workers)


def test_split_deals_round_robin():
    assert split([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert split([7], 4) == [[7]]


def test_split_deals_whole_groups():
    assert split(list(range(7)), 2, group=3) == [[0, 1, 2, 6], [3, 4, 5]]
    assert split(list(range(4)), 3, group=2) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="group=0 must be a positive integer"):
        split([1], 2, group=0)


def assert_same_study(one, other):
    (rows_a, runs_a), (rows_b, runs_b) = one, other
    assert rows_a == rows_b
    for a, b in zip(runs_a, runs_b, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.weight_loss, b.weight_loss)
        np.testing.assert_array_equal(a.metrics["distance"], b.metrics["distance"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_toy_study_gives_the_same_numbers_in_two_workers(backend):
    experiment = toy.variant("default", **SMALL)
    seeds = [5, 3, 8]
    alone = toy.study(experiment, seeds, diagnose=True, progress=False)
    assert [row["seed"] for row in alone[0]] == seeds
    spread = toy.study(experiment, seeds, diagnose=True, workers=Workers(2, backend))
    assert_same_study(alone, spread)


def test_workers_refuse_a_bad_backend_or_an_address_without_ray():
    with pytest.raises(ValueError, match=r"^backend='dask' is not allowed; choose one of"):
        Workers(2, "dask")
    with pytest.raises(ValueError, match=r"ray_address='auto' needs backend='ray'"):
        Workers(2, "processes", "auto")


#: A robustness study's settings for the tests: 3 seeds of a short run, without early stopping.
STUDY = dict(
    n_seeds=3, max_cycles=60, target=None, min_default_rate=0.5, min_group=1,
    output_dir="unused", checkpoint_dir=None, population=1,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TwoVariants(robustness.RobustnessSettings):
    """The robustness study cut to two variants and a short run."""

    def experiments(self):
        return {n: toy.variant(n, **SMALL) for n in ("default", "per-layer scale")}


def test_the_robustness_study_gives_the_same_numbers_in_two_workers():
    settings = {**STUDY, "first_seed": 10}
    alone = robustness.run(TwoVariants(workers=1, **settings), progress=False)
    both = robustness.run(TwoVariants(workers=2, **settings), progress=False)
    assert list(both) == ["default", "per-layer scale"]
    for name in alone:
        assert_same_study(alone[name], both[name])
    record = robustness.record(TwoVariants(workers=2, **settings), both)
    assert record["seeds"] == [10, 11, 12]
    assert record["variants"]["default"]["runs"] == 3


@dataclasses.dataclass(frozen=True)
class OneVariant(robustness.RobustnessSettings):
    """The robustness study cut to one variant and a short run."""

    def experiments(self):
        return {"default": toy.variant("default", **SMALL)}


def test_a_robustness_study_with_fewer_variants_than_workers_splits_their_seeds():
    """One variant on two workers: its seeds are split between them, and the study is the one
    run in this process, seed by seed."""
    settings = {**STUDY, "first_seed": 20}
    alone = robustness.run(OneVariant(workers=1, **settings), progress=False)
    both = robustness.run(OneVariant(workers=2, **settings), progress=False)
    assert [row["seed"] for row in both["default"][0]] == [20, 21, 22]
    assert_same_study(alone["default"], both["default"])


def test_a_study_in_populations_is_its_single_runs_and_ignores_the_workers():
    """Seeds in populations of 2 (the last one alone): within 200 cycles each row matches its
    single run (to rounding, diagnostics included), and dealing the populations to two workers
    changes no number."""
    experiment = toy.variant("default", **SMALL)
    seeds = [5, 3, 8]
    single = toy.study(experiment, seeds, diagnose=True, progress=False)
    grouped = toy.study(experiment, seeds, diagnose=True, progress=False, population=2)
    for a, b in zip(single[0], grouped[0], strict=True):
        assert a.keys() == b.keys() and a["outcome"] == b["outcome"]
        for key, value in a.items():
            if isinstance(value, float):
                assert abs(value - b[key]) <= 1e-9 * max(1.0, abs(value)), key
            else:
                assert value == b[key], key
    for a, b in zip(single[1], grouped[1], strict=True):
        np.testing.assert_allclose(a.values, b.values, rtol=1e-9)
    spread = toy.study(experiment, seeds, diagnose=True, workers=2, population=2)
    assert_same_study(grouped, spread)
    with pytest.raises(ValueError, match="population=0 must be a positive integer"):
        toy.study(experiment, seeds, progress=False, population=0)
