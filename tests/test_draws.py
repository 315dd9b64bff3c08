"""Random numbers drawn per chunk of cycles, keyed by cycle (stn.method.draws)."""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from stn.experiments.toy import ToyExperiment
from stn.method.draws import ChunkDraws
from stn.method.stn import STNConfig

TRAIN, VALID, WARMUP = 2, 1, 3


def _planned(draws: ChunkDraws, weight, hyper=None, evaluate=None, counts=(1, 1, 0, 2)):
    """Plan ``draws`` for a run with these steps (none: a step that draws nothing) and counts
    (train steps, valid steps, warm-up steps, cycles per chunk)."""
    names = ("train_steps", "valid_steps", "warmup_steps", "chunk_cycles")
    config = SimpleNamespace(**dict(zip(names, counts, strict=True)))
    nothing = lambda: 0.0  # noqa: E731
    steps = dict(weight_step=weight, hyper_step=hyper or nothing, evaluate=evaluate or nothing)
    draws.plan(SimpleNamespace(config=config, **steps))
    return draws


def _stream(seed, cycles: int) -> ChunkDraws:
    """A stream whose weight step draws a uniform [3] and a float32 normal [2, 2], and whose
    hyperparameter step draws a normal [5]."""
    draws = ChunkDraws(seed)
    counts = (TRAIN, VALID, WARMUP, cycles)
    return _planned(draws, lambda: _weight_step(draws), lambda: _hyper_step(draws), None, counts)


def _weight_step(draws: ChunkDraws) -> tf.Tensor:
    u = draws.uniform([3], -2.0, 2.0, dtype=tf.float64)
    n = draws.normal([2, 2], dtype=tf.float32)
    return tf.concat([tf.reshape(u, [-1, 3]), tf.cast(tf.reshape(n, [-1, 4]), tf.float64)], 1)


def _hyper_step(draws: ChunkDraws) -> tf.Tensor:
    return tf.reshape(draws.normal([5], dtype=tf.float64), [-1, 5])


def _run(draws: ChunkDraws, cycles: int, jit: bool = True) -> list[np.ndarray]:
    """What the steps of ``cycles`` cycles draw (after the warm-up steps), filled a chunk at a
    time as the trainer fills them."""
    out: list[np.ndarray] = []

    @tf.function(jit_compile=jit, autograph=False)
    def chunk(n_warmup: int) -> list[tf.Tensor]:
        draws.fill()
        got = [_weight_step(draws) for _ in range(n_warmup)]
        for i in range(draws.cycles):
            draws.seek(tf.constant(i))
            got += [_weight_step(draws) for _ in range(TRAIN)]
            got += [_hyper_step(draws) for _ in range(VALID)]
        draws.advance(tf.constant(draws.cycles))
        return got

    while len(out) < WARMUP + cycles * (TRAIN + VALID):
        out += [x.numpy() for x in chunk(0 if out else WARMUP)]
    return out


def test_a_chunk_draws_what_its_cycles_would_draw_one_by_one():
    """A seed gives the same numbers whatever the chunking: cycle c's numbers depend on c only."""
    whole = _run(_stream(7, cycles=6), 6)
    for cycles in (1, 2, 3):
        for a, b in zip(_run(_stream(7, cycles), 6), whole, strict=True):
            np.testing.assert_array_equal(a, b)
    other = _run(_stream(8, cycles=6), 6)
    assert not any(np.array_equal(a, b) for a, b in zip(other, whole, strict=True))
    distinct = {a.tobytes() for a in whole if a.shape[1] == 7}
    assert len(distinct) == WARMUP + 6 * TRAIN  # no step is served another's numbers


def test_a_member_draws_its_seeds_numbers():
    """In a population, member i draws the numbers of a run with seed i; members that share a
    seed share them."""
    members = _run(_stream([7, 9, 7], cycles=2), 2)
    singles = {seed: _run(_stream(seed, cycles=2), 2) for seed in (7, 9)}
    for j, seed in enumerate([7, 9, 7]):
        for member, single in zip(members, singles[seed], strict=True):
            np.testing.assert_array_equal(member[j : j + 1], single)


def test_draws_have_the_asked_distribution():
    """Uniform on [min, max), integers on [min, max), standard normal: each moment within five
    standard errors of the truth over one chunk of a large stream."""
    draws = ChunkDraws(3)
    shape = [200, 100]
    step = lambda: (  # noqa: E731
        draws.uniform(shape, 2.0, 5.0, dtype=tf.float64),
        draws.uniform(shape, 3, 10, dtype=tf.int64),
        draws.normal(shape, dtype=tf.float32),
    )
    _planned(draws, step, counts=(1, 1, 0, 5))
    uniform, integer, normal = (x.numpy().ravel() for x in step())
    n = uniform.size
    assert uniform.min() >= 2.0 and uniform.max() < 5.0
    assert abs(uniform.mean() - 3.5) < 5 * (3 / np.sqrt(12)) / np.sqrt(n)
    assert set(np.unique(integer)) == set(range(3, 10))
    assert abs(integer.mean() - 6.0) < 5 * np.sqrt((7**2 - 1) / 12) / np.sqrt(n)
    assert abs(normal.mean()) < 5 / np.sqrt(n)
    assert abs(normal.var() - 1) < 5 * np.sqrt(2 / n)


def test_steps_outside_a_chunk_draw_in_order_from_the_current_position():
    """Steps called eagerly draw the chunk's numbers in order, as a function compiled without
    XLA would (XLA's Philox kernel is its own, so its numbers differ)."""
    draws = _stream(5, cycles=2)
    eager = [_weight_step(draws).numpy() for _ in range(WARMUP)]
    compiled = _run(_stream(5, cycles=2), 2, jit=False)
    for a, b in zip(eager, compiled[:WARMUP], strict=True):
        np.testing.assert_array_equal(a, b)
    draws.reset_from_seed(5)
    np.testing.assert_array_equal(_weight_step(draws).numpy(), eager[0])


def test_what_per_chunk_draws_cannot_serve_is_named():
    draws = ChunkDraws(1)
    with pytest.raises(ValueError, match="the evaluation draws random numbers"):
        _planned(draws, lambda: 0.0, evaluate=lambda: draws.normal([2]))
    dynamic = ChunkDraws(1)
    unknown = lambda: dynamic.normal(tf.shape(tf.unique([1, 1, 2])[0]))  # noqa: E731
    with pytest.raises(ValueError, match="needs every draw's shape known"):
        _planned(dynamic, unknown)
    with pytest.raises(ValueError, match=r"seed=\[1, 2\] must be like this stream's"):
        draws.reset_from_seed([1, 2])
    with pytest.raises(ValueError, match="draws='often' is not allowed"):
        STNConfig(draws="often")


PER_CHUNK = dict(draws="per_chunk", target=None, snapshot_every=10)


def _same(a, b, tol: float = 0.0) -> None:
    for key in ("values", "stddev", "weight_loss", "hyper_loss"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=0, atol=tol)
    np.testing.assert_allclose(a.metrics["distance"], b.metrics["distance"], rtol=0, atol=tol)


def test_a_per_chunk_run_is_the_same_whatever_the_chunking():
    runs = [
        ToyExperiment(seed=3, max_cycles=60, chunk_cycles=chunk, **PER_CHUNK).build().run()
        for chunk in (20, 30)
    ]
    _same(*runs)
    per_step = ToyExperiment(seed=3, max_cycles=60, chunk_cycles=20, snapshot_every=10)
    assert not np.array_equal(per_step.build().run().values, runs[0].values)


def test_a_per_chunk_member_is_the_single_run_of_its_seed():
    experiment = ToyExperiment(max_cycles=100, chunk_cycles=50, **PER_CHUNK)
    members = experiment.build((3, 8)).run()
    single = experiment.build(3)
    for seed, member in zip((3, 8), members, strict=True):
        single.reset(seed)
        _same(member, single.run(), tol=1e-9)


def test_a_per_chunk_run_resumes_from_its_checkpoint(tmp_path):
    experiment = ToyExperiment(seed=5, max_cycles=90, chunk_cycles=30, **PER_CHUNK)
    whole = experiment.build().run()
    experiment.build().run(max_cycles=30, checkpoint_dir=tmp_path)  # then the process "crashes"
    _same(experiment.build().run(checkpoint_dir=tmp_path), whole)


def test_the_toy_runs_on_either_source_of_numbers():
    """Per step or per chunk, the toy trains: the same distributions, different numbers."""
    settings = dict(max_cycles=300, chunk_cycles=100, snapshot_every=100, target=None, seed=2)
    chunked = ToyExperiment(draws="per_chunk", **settings).build().run()
    stepped = ToyExperiment(**settings).build().run()
    assert not np.array_equal(chunked.values, stepped.values)
    for run in (chunked, stepped):
        assert run.metrics["distance"][-1] < run.metrics["distance"][0]
