"""Random numbers drawn a chunk of cycles at a time, keyed by cycle (``STNConfig.draws``).

A cycle's numbers are Philox's at the run's key and at counters that start at the cycle's index
times its block (one block per kind of draw: uniform or normal, per precision), so one call that
draws a whole chunk of cycles gives the numbers that one call per cycle would. A seed therefore
gives the same run whatever the chunking, and a resumed run needs only the index of its next
cycle. A step then takes its numbers as slices of the chunk's draw instead of drawing a few
hundred numbers itself, which on a small network is much of what a step costs (the JAX reference
draws per chunk too).

How many numbers a cycle takes is found once, by tracing a weight step and a hyperparameter step
with zeros for draws (:meth:`ChunkDraws.plan`), so every draw of a step needs a static shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from stn.method.population import check_seeds, for_members, stream_index

#: numbers in a block are a multiple of this, so every block starts on a whole Philox counter
_PER_COUNTER = 4
_PHILOX = tf.random.Algorithm.PHILOX.value
_EAGER = object()  # the buffers were filled eagerly
Kind = str  # "uniform_float64", "normal_float32": what is drawn, in which precision


class Planned(Protocol):
    """What :meth:`ChunkDraws.plan` reads: the steps, and how many a cycle and a chunk run."""

    config: Any  # an STNConfig: train_steps, valid_steps, warmup_steps, chunk_cycles

    def weight_step(self) -> object: ...

    def hyper_step(self) -> object: ...

    def evaluate(self) -> object: ...


class ChunkDraws(tf.Module):
    """The interface of a ``tf.random.Generator`` (``uniform``, ``normal``, ``reset_from_seed``)
    served from one draw per chunk of cycles: for one run (``seed`` an int), or stacked [P, *S]
    for a population (a sequence of seeds; members that share a seed share its numbers).

    The loop that runs the chunk calls :meth:`fill` before it, :meth:`seek` before each cycle
    and :meth:`advance` after it; the steps draw in between, as from any generator. Steps called
    outside a chunk (eagerly, or in a function of their own) draw from a chunk filled at the
    current position on their first draw, in order."""

    def __init__(self, seed: int | Sequence[int]):
        super().__init__(name="chunk_draws")
        self.population = None if isinstance(seed, int) else len(check_seeds(seed, False))
        self.stacks_members = self.population is not None  # whether a draw of shape S is [P, *S]
        seeds = [seed] if isinstance(seed, int) else list(seed)
        self.index = stream_index(seeds)
        distinct = list(dict.fromkeys(seeds))
        self.keys = tf.Variable(distinct, dtype=tf.int64, name="keys", trainable=False)
        # cycles drawn so far
        self.position = tf.Variable(0, dtype=tf.int64, name="position", trainable=False)
        self.cursors: dict[Kind, tf.Variable] = {}
        self.blocks: dict[Kind, tuple[int, int]] = {}  # per cycle, per warm-up step
        self.cycles = self.warmup_steps = 0
        self._tally: dict[Kind, int] | None = None
        self._buffers: dict[Kind, tf.Tensor] = {}
        self._graph: object = None  # the graph (or eager context) the buffers belong to

    def plan(self, run: Planned) -> None:
        """Find how many numbers of each kind a cycle, a warm-up step and a chunk of ``run``
        take, by tracing its steps (not running them)."""
        cfg = run.config
        train_steps, valid_steps = cfg.train_steps, cfg.valid_steps
        self.warmup_steps, self.cycles = cfg.warmup_steps, cfg.chunk_cycles
        weight, hyper = self._count(run.weight_step), self._count(run.hyper_step)
        if self._count(run.evaluate):
            raise ValueError(
                "draws='per_chunk' serves the training steps only, but the evaluation draws "
                "random numbers: use draws='per_step'"
            )
        for kind in dict.fromkeys([*weight, *hyper]):
            per_cycle = train_steps * weight.get(kind, 0) + valid_steps * hyper.get(kind, 0)
            self.blocks[kind] = (_whole(per_cycle), _whole(weight.get(kind, 0)))
            name = f"cursor_{kind}"
            self.cursors[kind] = tf.Variable(0, dtype=tf.int32, name=name, trainable=False)

    def _count(self, step: Callable[[], object]) -> dict[Kind, int]:
        """How many numbers of each kind one call of ``step`` draws (traced, not run)."""
        self._tally = {}
        try:
            tf.function(step, autograph=False).get_concrete_function()
            return self._tally
        finally:
            self._tally = None

    # -- the loop's side --------------------------------------------------------------------------

    def fill(self) -> None:
        """Draw the next chunk (in-graph): the warm-up's numbers, then ``cycles`` cycles'."""
        self._buffers = {kind: self._chunk(kind, stream) for stream, kind in enumerate(self.blocks)}
        self._graph = _EAGER if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
        for cursor in self.cursors.values():
            cursor.assign(0)

    def _chunk(self, kind: Kind, stream: int) -> tf.Tensor:
        """Kind's numbers for the warm-up and the chunk's cycles, [L] or [P, L]: the warm-up's
        from lane 2·stream + 1, the cycles' from lane 2·stream, each at the current position."""
        per_cycle, per_warmup = self.blocks[kind]
        blocks = [(self.warmup_steps * per_warmup, 1, 2 * stream + 1)]  # one warm-up per position
        blocks.append((per_cycle, self.cycles, 2 * stream))
        members = []
        for j in range(max(self.index) + 1):  # one draw per distinct seed
            key = tf.bitcast(self.keys[j : j + 1], tf.uint64)
            draws = [
                _philox(kind, block * times, key, self._counter(kind, block, lane))
                for block, times, lane in blocks
                if block
            ]
            members.append(tf.concat(draws, 0))
        return members[0] if self.population is None else for_members(members, self.index)

    def _counter(self, kind: Kind, block: int, lane: int) -> tf.Tensor:
        """Philox's counter at the current position for blocks of ``block`` numbers per cycle:
        the first word counts whole counters, the second is the lane."""
        per_counter = 16 // _dtype(kind).size  # 128 bits: 4 numbers of 32 bits or 2 of 64
        first = self.position * (block // per_counter)
        return tf.stack([tf.bitcast(first, tf.uint64), tf.constant(lane, tf.uint64)])

    def seek(self, cycle: tf.Tensor) -> None:
        """Serve the chunk's cycle ``cycle`` next (in-graph)."""
        for kind, cursor in self.cursors.items():
            per_cycle, per_warmup = self.blocks[kind]
            cursor.assign(self.warmup_steps * per_warmup + cycle * per_cycle)

    def advance(self, cycles: tf.Tensor) -> None:
        """Count ``cycles`` more cycles as drawn (in-graph, after a chunk)."""
        self.position.assign_add(tf.cast(cycles, tf.int64))

    def reset_from_seed(self, seed: int | Sequence[int]) -> None:
        """Start over from ``seed`` (one per member, shared as the population's first seeds
        were), at cycle 0."""
        seeds = [seed] if isinstance(seed, int) else list(check_seeds(seed, False))
        if len(seeds) != len(self.index) or stream_index(seeds) != self.index:
            raise ValueError(
                f"seed={seed!r} must be like this stream's: {len(self.index)} seed(s), repeated "
                "where the first seeds were"
            )
        self.keys.assign(list(dict.fromkeys(seeds)))
        self.position.assign(0)
        self._graph = None  # the next draw outside a chunk fills one from the new seed

    # -- the steps' side --------------------------------------------------------------------------

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32) -> tf.Tensor:
        """Normal numbers of ``shape``, as ``tf.random.Generator.normal`` draws them."""
        return mean + stddev * self._take("normal", shape, tf.as_dtype(dtype))

    def uniform(self, shape, minval=0, maxval=None, dtype=tf.float32) -> tf.Tensor:
        """Uniform numbers on [minval, maxval) of ``shape``, as ``tf.random.Generator.uniform``
        draws them (integers too)."""
        dtype = tf.as_dtype(dtype)
        if dtype.is_integer:  # floor of a float64 uniform: unbiased to 2⁻⁵³ of the range
            if maxval is None:
                raise ValueError(f"maxval=None: an integer uniform of {dtype.name} needs maxval")
            u = self._take("uniform", shape, tf.float64)
            span = tf.cast(maxval, tf.float64) - tf.cast(minval, tf.float64)
            return tf.cast(minval, dtype) + tf.cast(tf.floor(u * span), dtype)
        u = self._take("uniform", shape, dtype)
        return minval + (1.0 if maxval is None else maxval - minval) * u

    def _take(self, name: str, shape, dtype: tf.DType) -> tf.Tensor:
        """The next numbers of a kind, shaped [*shape] (or [P, *shape])."""
        dims = _static(shape)
        kind, size = f"{name}_{dtype.name}", math.prod(dims)
        if self._tally is not None:
            self._tally[kind] = self._tally.get(kind, 0) + size
            return tf.zeros([*self._lead, *dims], dtype)
        if tf.executing_eagerly() and self._graph is not _EAGER:
            self.fill()
        elif not tf.executing_eagerly() and not self._in_chunk():
            with _outermost(tf.compat.v1.get_default_graph()).as_default():
                self.fill()  # in the outermost function, before any loop in it
        if kind not in self._buffers:
            raise ValueError(
                f"a {name} draw of {dtype.name} that plan() did not see in the steps: with "
                "draws='per_chunk' only the weight and hyperparameter steps draw"
            )
        start = self.cursors[kind].assign_add(size) - size
        # a gather, not a slice: XLA would compile a slice's start in as a constant, read from
        # the cursor when the chunk is called, and so compile the chunk again for each value
        taken = tf.gather(self._buffers[kind], start + tf.range(size), axis=len(self._lead))
        return tf.reshape(taken, [*self._lead, *dims])

    def _in_chunk(self) -> bool:
        """Whether the current function graph is the one the buffers were filled in, or inside
        it (a loop's body)."""
        graph = tf.compat.v1.get_default_graph()
        while graph is not None and graph is not self._graph:
            graph = getattr(graph, "outer_graph", None)
        return graph is not None

    @property
    def _lead(self) -> list[int]:
        return [] if self.population is None else [self.population]


def _outermost(graph: tf.Graph) -> tf.Graph:
    """The function graph that ``graph`` (a loop's body, say) is nested in, or ``graph``."""
    while hasattr(getattr(graph, "outer_graph", None), "outer_graph"):
        graph = graph.outer_graph
    return graph


def _philox(kind: Kind, size: int, key: tf.Tensor, counter: tf.Tensor) -> tf.Tensor:
    """``size`` of kind's numbers from Philox at ``key`` and ``counter``."""
    normal = kind.startswith("normal")
    op = tf.raw_ops.StatelessRandomNormalV2 if normal else tf.raw_ops.StatelessRandomUniformV2
    return op(shape=[size], key=key, counter=counter, alg=_PHILOX, dtype=_dtype(kind))


def _dtype(kind: Kind) -> tf.DType:
    return tf.as_dtype(kind.split("_", 1)[1])


def _whole(size: int) -> int:
    """``size`` rounded up to whole Philox counters, so blocks start on a counter."""
    return -(-size // _PER_COUNTER) * _PER_COUNTER


def _static(shape) -> list[int]:
    """``shape`` as Python integers; a ValueError if it is only known when the step runs."""
    value = tf.get_static_value(tf.convert_to_tensor(shape))
    if value is None:
        raise ValueError(
            f"shape={shape!r}: draws='per_chunk' needs every draw's shape known when the step "
            "is traced; use draws='per_step'"
        )
    return [int(d) for d in np.reshape(value, [-1])]
