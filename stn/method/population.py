"""The population axis: P independent runs of Algorithm 1 in one compiled program.

Every variable of a population has a leading axis of size P (a weight [in, out] becomes
[P, in, out], λ [H] becomes [P, H]), so one matrix product, one optimizer kernel and one loss serve
every member, which is what pays on an accelerator. Each member draws from its own random stream,
the stream a single run with the member's seed would draw from, in the same shapes and order, so
member i is the single run with seed i (to rounding). The loss a step descends is the sum of the
members' losses, whose gradient for member i's variables is member i's own gradient.

A member stops on its own: :class:`MemberMask` holds which members are still training, and the
optimizers keep a stopped member's variables and slots as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from stn.util.checks import is_count

Seeds = Sequence[int]


def check_seeds(seeds: object, distinct: bool = True) -> tuple[int, ...]:
    """``seeds`` as a tuple of integers >= 0 (``distinct`` ones: a population of seeds), at
    least one; else a ValueError."""
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds={seeds!r} must be a non-empty sequence of integers >= 0")
    if not all(is_count(s) for s in seeds):
        raise ValueError(f"seeds={list(seeds)!r} must be integers >= 0")
    if distinct and len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={list(seeds)!r} must be distinct integers >= 0")
    return tuple(int(s) for s in seeds)


def population_size(seed: int | Seeds, task: object) -> int | None:
    """None for one run's seed; P for a sequence of P seeds, if ``task`` runs populations (it
    says so with ``supports_population = True``)."""
    if isinstance(seed, int):
        return None
    size = len(check_seeds(seed))
    if not getattr(task, "supports_population", False):
        raise ValueError(
            f"seed={list(seed)!r}: {type(task).__name__} does not run a population yet; "
            "give one seed per run"
        )
    return size


def check_like(seed: int | Seeds, current: int | Seeds) -> None:
    """A ValueError unless ``seed`` can restart a run (or population) that has ``current``:
    one seed for a run, as many seeds as members for a population."""
    if isinstance(current, int):
        ok = isinstance(seed, int) and is_count(seed)
    else:
        ok = not isinstance(seed, int) and len(check_seeds(seed)) == len(current)
    if not ok:
        raise ValueError(f"seed={seed!r} must be like this STN's seed={current!r}")


class PopulationGenerator(tf.Module):
    """P random streams behind the interface of one ``tf.random.Generator``: a draw of shape S
    is P draws of shape S, one from each member's stream (member i's from ``seeds[i]``),
    stacked to [P, *S].

    Members may share a seed, as the trials of one search do (one seed, different values):
    then they share one stream (``members`` holds one generator per distinct seed), which draws
    once for all of them, so P trials of one seed cost one batch's draws, not P."""

    stacks_members = True  # a draw of shape S is [P, *S]

    def __init__(self, seeds: Seeds):
        super().__init__(name="population_generator")
        seeds = check_seeds(seeds, distinct=False)
        self.size, self.index = len(seeds), stream_index(seeds)
        self.members = [tf.random.Generator.from_seed(s) for s in dict.fromkeys(seeds)]

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32) -> tf.Tensor:
        draws = [g.normal(shape, mean, stddev, dtype) for g in self.members]
        return for_members(draws, self.index)

    def uniform(self, shape, minval=0, maxval=None, dtype=tf.float32) -> tf.Tensor:
        draws = [g.uniform(shape, minval, maxval, dtype) for g in self.members]
        return for_members(draws, self.index)

    def reset_from_seed(self, seeds: Seeds) -> None:
        """Restart every member's stream, member i from ``seeds[i]`` (members that shared a
        seed must share one again: they share a stream)."""
        seeds = check_seeds(seeds, distinct=False)
        if len(seeds) != len(self) or stream_index(seeds) != self.index:
            raise ValueError(
                f"seeds={list(seeds)} must have one seed per member ({len(self)}), repeated "
                "where the population's first seeds were"
            )
        for generator, seed in zip(self.members, dict.fromkeys(seeds), strict=True):
            generator.reset_from_seed(seed)

    def __len__(self) -> int:
        return self.size


def for_members(draws: list[tf.Tensor], index: list[int]) -> tf.Tensor:
    """Each member's draw, [P, *S], from one draw per distinct seed; ``index`` says which one
    each member takes (:func:`stream_index`)."""
    if len(draws) == len(index):  # every member its own stream
        return tf.stack(draws)
    if len(draws) == 1:
        return tf.broadcast_to(draws[0], tf.concat([[len(index)], tf.shape(draws[0])], 0))
    return tf.gather(tf.stack(draws), index)


def stream_index(seeds: Sequence[int]) -> list[int]:
    """Which distinct seed (in order of first appearance) each member draws from."""
    distinct = list(dict.fromkeys(seeds))
    return [distinct.index(s) for s in seeds]


def draw_shape(x: tf.Tensor, generator: object) -> tf.Tensor:
    """The shape to draw for one random number per element of ``x``: x's own shape from one
    run's generator, one member's from a population's (which stacks the members' draws)."""
    members = getattr(generator, "stacks_members", False)
    if x.shape.is_fully_defined():  # static, so a traced draw knows its size
        return x.shape[1:] if members else x.shape
    return tf.shape(x)[1:] if members else tf.shape(x)


class MemberMask(tf.Module):
    """Which members of a population still train: a boolean variable [P]."""

    def __init__(self, size: int):
        super().__init__(name="member_mask")
        self.active = tf.Variable(tf.ones([size], tf.bool), trainable=False, name="active")

    def keep_stopped(self, var: tf.Variable, old: tf.Tensor) -> None:
        """Put back the value ``old`` of ``var`` for every stopped member."""
        active = tf.reshape(self.active, [-1] + [1] * (var.shape.rank - 1))
        var.assign(tf.where(active, var, old))

    def reset(self) -> None:
        self.active.assign(tf.ones_like(self.active))
