"""The project's benchmark: cost per cycle of each way of running Algorithm 1 on the toy.

Modes, all measured in one process on the same machine: the design document's eager loop
(``stn.experiments.reference``), one compiled cycle per call, and compiled chunks of K cycles with
and without XLA. Times are medians over repeated runs, in µs per cycle (2 weight + 2 hyper steps
+ evaluation). Many runs: the cost per member-cycle of a population against its size P, beside
the same runs dealt to worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from stn.experiments.baselines import (
    FixedTrainer,
    SearchResult,
    grid_points,
    random_points,
    search,
)
from stn.experiments.real_data import DTYPES, RealDataExperiment, TrialPool
from stn.experiments.reference import design_doc_loop
from stn.experiments.toy import VARIANTS, ToyExperiment
from stn.experiments.workers import WorkerPool, Workers, map_runs, ray_session, split
from stn.training.loop import Trainer
from stn.util import xla
from stn.util.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class Mode:
    """One way of running the loop: K cycles per compiled call, with or without XLA."""

    name: str
    chunk_cycles: int
    jit_compile: bool
    cycles: int  # cycles per timed run

    def experiment(self, base: ToyExperiment) -> ToyExperiment:
        return dataclasses.replace(
            base,
            chunk_cycles=self.chunk_cycles,
            snapshot_every=min(200, self.chunk_cycles),
            jit_compile=self.jit_compile,
            max_cycles=self.cycles,
            target=None,  # time a fixed number of cycles
        )


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings(Settings):
    """The benchmark notebook's settings: what is timed, and the claims' bounds."""

    repeats: int = setting(ge=1)
    eager_cycles: int = setting(ge=1)
    max_cycles: int = setting(ge=1)
    batch_sizes: list[int] = setting(min_length=1, items={"ge": 1})
    widths: list[int] = setting(min_length=1, items={"ge": 1})
    scaling_seconds: float = setting(gt=0)
    memory_cycles: int = setting(ge=1)
    min_speedup: float = setting(gt=0)
    max_us_per_cycle: float = setting(gt=0)
    max_full_run_seconds: float = setting(gt=0)
    max_added_mib: float = setting(gt=0)
    population_sizes: list[int] = setting(min_length=1, items={"ge": 1})
    population_cycles: int = setting(ge=1)
    mlp_population_sizes: list[int] = setting(min_length=1, items={"ge": 1})
    mlp_population_cycles: int = setting(ge=25)  # a multiple of the evaluation interval, 25
    cnn_population_sizes: list[int] = setting(min_length=1, items={"ge": 1})
    cnn_population_cycles: int = setting(ge=25)  # a multiple of the evaluation interval, 25
    trial_population_sizes: list[int] = setting(min_length=1, items={"ge": 1})
    trial_population_steps: int = setting(ge=75)  # a multiple of the evaluation interval, 75
    population_full_members: int = setting(ge=1)
    population_repeats: int = setting(ge=1)
    population_workers: int = setting(ge=1)
    search_trials: int = setting(ge=1)
    search_steps: int = setting(ge=9)  # successive halving's shortest rung: trial_steps / 9
    single_run_variants: list[str] = setting(min_length=1)
    output_dir: str = setting()

    def check_together(self) -> None:
        for name in self.single_run_variants:
            if name not in VARIANTS:
                raise ValueError(
                    f"single_run_variants contains {name!r}; allowed: {', '.join(VARIANTS)}"
                )
        sizes = ("population_sizes", "mlp_population_sizes", "cnn_population_sizes")
        for name in (*sizes, "trial_population_sizes"):
            if getattr(self, name)[0] != 1:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} must start at 1: the gain of a "
                    "population is against its cost at P = 1"
                )


def default_modes(max_cycles: int = 10000) -> list[Mode]:
    """K = 1 (one compiled cycle per call), 10, 100, 1000, each with and without XLA."""
    modes = []
    for k, cycles in ((1, 300), (10, 2000), (100, max_cycles), (1000, max_cycles)):
        for jit in (False, True):
            label = f"K={k}" + (" XLA" if jit else "")
            modes.append(Mode(label, k, jit, min(cycles, max_cycles)))
    return modes


def time_mode(mode: Mode, base: ToyExperiment, repeats: int) -> dict[str, float]:
    """First run (compile included), then ``repeats`` timed runs from reset; µs per cycle."""
    seeds = [base.seed + r for r in range(repeats)]
    return time_runs(mode.experiment(base), seeds, count_build=False)


def time_runs(experiment: ToyExperiment, seeds: list[int], count_build: bool) -> dict[str, float]:
    """``experiment``'s first run (compile included, and building if ``count_build``), then
    one timed run from each of ``seeds`` on the same trainer: median µs per cycle."""
    start = time.perf_counter()
    trainer = experiment.build()
    if not count_build:
        start = time.perf_counter()
    first = trainer.run()
    first_seconds = time.perf_counter() - start
    samples = []
    for seed in seeds:
        trainer.reset(seed)
        start = time.perf_counter()
        trajectory = trainer.run()
        samples.append((time.perf_counter() - start) / trajectory.cycles * 1e6)
    return {
        "us_per_cycle": float(np.median(samples)),
        "us_per_cycle_samples": samples,
        "compile_seconds": float(first.extra["compile_seconds"]),
        "first_run_seconds": first_seconds,
        "cycles": first.cycles,
        "traces": trainer.trace_count,
    }


def time_eager(cycles: int, repeats: int) -> dict[str, float]:
    """The design document's loop, as written there."""
    design_doc_loop(2)  # traces its tf.functions
    samples = [design_doc_loop(cycles) * 1e6 for _ in range(repeats)]
    return {
        "us_per_cycle": float(np.median(samples)),
        "us_per_cycle_samples": samples,
        "cycles": cycles,
    }


def speed_benchmark(
    base: ToyExperiment, modes: list[Mode], eager_cycles: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Every mode and the eager baseline, in one run; adds the speed-up over the eager loop."""
    results = {"design doc (eager)": time_eager(eager_cycles, repeats)}
    for mode in modes:
        results[mode.name] = time_mode(mode, base, repeats)
    eager = results["design doc (eager)"]["us_per_cycle"]
    for r in results.values():
        r["speedup"] = eager / r["us_per_cycle"]
    return results


def scaling_benchmark(
    base: ToyExperiment, batch_sizes: list[int], widths: list[int], seconds: float = 1.0
) -> list[dict[str, float]]:
    """µs per cycle of the compiled loop (chunks of 10, XLA) for each batch size and width;
    each point runs for about ``seconds``."""
    rows = []
    for width in widths:
        for batch in batch_sizes:
            exp = dataclasses.replace(
                base,
                width=width,
                batch_size=batch,
                chunk_cycles=10,
                snapshot_every=10,
                target=None,
                max_cycles=10,
            )
            trainer = exp.build()
            trainer.run()  # compile
            start = time.perf_counter()
            trainer.run()
            estimate = max(time.perf_counter() - start, 1e-4) / 10
            cycles = int(max(10, min(20000, round(seconds / estimate, -1))))
            start = time.perf_counter()
            trajectory = trainer.run(max_cycles=cycles)
            elapsed = time.perf_counter() - start
            rows.append(
                dict(
                    width=width,
                    batch_size=batch,
                    cycles=trajectory.cycles,
                    us_per_cycle=elapsed / trajectory.cycles * 1e6,
                )
            )
    return rows


@dataclasses.dataclass(frozen=True)
class ToyWorkload:
    """The toy experiment as a workload of the population study: runs of ``cycles`` cycles."""

    experiment: ToyExperiment
    cycles: int
    name: str = "toy"
    unit: int = 1  # a run's cycles are a multiple of this (any will do)

    def build(self, seed: int | tuple[int, ...]) -> Trainer:
        return _fixed_length(self.experiment, self.cycles).build(seed)


@dataclasses.dataclass(frozen=True)
class ClassifierWorkload:
    """The real-data STN (``experiment``'s hyper MLP or hyper CNN on digits, no warm-up) as a
    workload: runs of ``cycles`` cycles, all on the split of data seed 0."""

    experiment: RealDataExperiment
    cycles: int

    @property
    def name(self) -> str:
        return self.experiment.model

    @property
    def unit(self) -> int:
        """A run's cycles are a multiple of its evaluation interval."""
        return self.experiment.eval_cycles

    def build(self, seed: int | tuple[int, ...]) -> Trainer:
        # RealDataExperiment names ``cycles`` if it is no whole number of evaluation intervals
        exp = dataclasses.replace(self.experiment, warmup_steps=0, stn_cycles=self.cycles)
        return exp.stn_trainer(seed, exp.data(0))


@dataclasses.dataclass(frozen=True)
class TrialWorkload:
    """A search's trials as a workload: ``experiment``'s plain network trained at fixed values
    for ``cycles`` steps on the split of data seed 0, all from seed 0 as a search's trials are.
    Trial s is the search space's random point s, so P members are P trials of one search."""

    experiment: RealDataExperiment
    cycles: int

    @property
    def name(self) -> str:
        return f"{self.experiment.model} trials"

    @property
    def unit(self) -> int:
        """A trial's steps are a multiple of its evaluation interval."""
        return self.experiment.eval_every_steps

    def build(self, seed: int | tuple[int, ...]) -> TrialRuns:
        members = None if isinstance(seed, int) else len(seed)
        runs = TrialRuns(self.experiment.fixed_trainer(0, members=members), self.cycles)
        runs.reset(seed)
        return runs


class TrialRuns:
    """Trials as the population study runs them: ``reset(s)`` picks trial s (or a population's
    trials), ``run()`` trains them for ``steps`` steps from seed 0."""

    def __init__(self, trainer: FixedTrainer, steps: int):
        self.trainer, self.steps = trainer, steps

    def reset(self, trials: int | tuple[int, ...]) -> None:
        picked = [trials] if isinstance(trials, int) else list(trials)
        specs = self.trainer.fixed.hyperparameters.specs
        points = [random_points(specs, 1, seed=s)[0] for s in picked]
        self.trainer.fixed.reset(0, points if self.trainer.members else points[0])

    def run(self) -> None:
        self.trainer.trainer.run(max_cycles=self.steps)


Workload = ToyWorkload | ClassifierWorkload | TrialWorkload


def cycles_at(workload: Workload, members: int, full_members: int | None) -> int:
    """The cycles of ``workload``'s timed runs at P = ``members``: all of its cycles up to
    ``full_members`` members, then fewer, so that a run does about ``full_members`` members'
    worth of member-cycles (rounded down to the workload's unit, and at least one unit)."""
    if full_members is None or members <= full_members:
        return workload.cycles
    share = workload.cycles * full_members // members
    return max(workload.unit, share - share % workload.unit)


def population_benchmark(
    workload: Workload,
    sizes: list[int],
    repeats: int,
    workers: int = 2,
    full_members: int | None = None,
) -> list[dict[str, float]]:
    """Cost per member-cycle of P runs, for each P in ``sizes``, two ways: a population
    (:mod:`stn.method.population`; its first run, compile included, and the median of
    ``repeats`` runs after it), and the P runs as single runs dealt to ``workers`` processes
    (process start and compile included). Beyond ``full_members`` members the runs are
    shortened (:func:`cycles_at`), so the large sizes cost no more than that size. ``gain`` is
    the population's steady cost at P = 1 over its cost at P, both measured in this run."""
    rows = []
    for p in sizes:
        cycles = cycles_at(workload, p, full_members)
        workload_p = dataclasses.replace(workload, cycles=cycles)
        first, samples = _time_population(workload_p, p, repeats)
        start = time.perf_counter()
        map_runs(run_seeds, [(workload_p, part) for part in split(range(p), workers)], workers)
        spread = time.perf_counter() - start
        rows.append(
            {
                "members": p,
                "cycles": cycles,
                "us_per_member_cycle": float(np.median(samples)),
                "us_per_member_cycle_samples": samples,
                "first_run_us_per_member_cycle": first / (p * cycles) * 1e6,
                "workers": workers,
                "workers_us_per_member_cycle": spread / (p * cycles) * 1e6,
            }
        )
    for row in rows:
        row["gain"] = rows[0]["us_per_member_cycle"] / row["us_per_member_cycle"]
    return rows


def _time_population(workload: Workload, p: int, repeats: int) -> tuple[float, list[float]]:
    """A population of P = ``p`` members: its first run's seconds (compile included), then µs
    per member-cycle of ``repeats`` runs from fresh seeds on the same compiled program."""
    trainer = workload.build(tuple(range(p)))
    start = time.perf_counter()
    trainer.run()
    first = time.perf_counter() - start
    samples = []
    for r in range(1, repeats + 1):
        trainer.reset(tuple(range(r * p, (r + 1) * p)))
        start = time.perf_counter()
        trainer.run()
        samples.append((time.perf_counter() - start) / (p * workload.cycles) * 1e6)
    return first, samples


def run_seeds(workload: Workload, seeds: list[int]) -> None:
    """The single runs of ``seeds``, one after another on one compiled trainer."""
    trainer = workload.build(seeds[0])
    for seed in seeds:
        trainer.reset(seed)
        trainer.run()


def grid_search_benchmark(
    experiment: RealDataExperiment, workers: int, dtypes: Sequence[str] = DTYPES
) -> list[dict[str, object]]:
    """A grid search of ``experiment``'s ``n_trials`` trials of ``trial_steps`` steps on the
    data of seed 0, at each precision of ``dtypes``, three ways: its trials one after another
    in this process, dealt to ``workers`` workers of a local Ray instance, and as one
    population of all its trials in this process (``population``: the members of the
    program, 1 for single trials). ``seconds`` is the search with its building and compiling
    (and its workers' start); Ray's start, which a study pays once for all its searches, is
    timed apart (``ray_start_seconds``). ``speedup`` is against the first precision's trials
    one after another, ``speedup_same_dtype`` against its own, both measured in this run; a
    seed fixes every trial, so the single trials' best validation loss does not depend on the
    workers, and the population's members are those trials to rounding."""
    rows: list[dict[str, object]] = []
    for dtype in dtypes:
        exp = dataclasses.replace(experiment, dtype=dtype)
        for count in sorted({1, workers}):
            result, ray_start, seconds = _timed_grid_search(exp, count)
            rows.append(_grid_row(dtype, count, 1, result, ray_start, seconds))
    for dtype in dtypes:
        exp = dataclasses.replace(experiment, dtype=dtype)
        start = time.perf_counter()
        result = _grid_search_population(exp)
        seconds = time.perf_counter() - start
        rows.append(_grid_row(dtype, 1, len(result.runs), result, 0.0, seconds))
    alone = [r for r in rows if r["workers"] == 1 and r["population"] == 1]
    sequential = {r["dtype"]: r["seconds"] for r in alone}
    for row in rows:
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
        row["speedup_same_dtype"] = sequential[row["dtype"]] / row["seconds"]
    return rows


def _grid_row(
    dtype: str, workers: int, population: int, result: SearchResult, ray: float, seconds: float
) -> dict[str, object]:
    return {
        "dtype": dtype,
        "workers": workers,
        "population": population,
        "trials": len(result.runs),
        "ray_start_seconds": ray,
        "seconds": seconds,
        "best_valid_loss": result.best()["valid_loss"],
    }


def _grid_search_population(experiment: RealDataExperiment) -> SearchResult:
    """``experiment``'s grid search on seed 0's data, all its trials one population."""
    _, specs = experiment.problem(experiment.data(0))
    points = grid_points(specs, experiment.n_trials)
    trainer = experiment.fixed_trainer(0, members=len(points))
    return search(trainer, points, experiment.trial_steps)


def _timed_grid_search(
    experiment: RealDataExperiment, count: int
) -> tuple[SearchResult, float, float]:
    """``experiment``'s grid search on ``count`` workers (this process for one), with the
    seconds to start Ray (0 for none) and the seconds of the search itself."""
    workers, ray_start = Workers(count, "ray"), 0.0
    with contextlib.ExitStack() as stack:
        if count > 1:
            start = time.perf_counter()
            stack.enter_context(ray_session(workers))
            ray_start = time.perf_counter() - start
        start = time.perf_counter()
        result = _grid_search(experiment, workers)
        return result, ray_start, time.perf_counter() - start


def _grid_search(experiment: RealDataExperiment, workers: Workers) -> SearchResult:
    """``experiment``'s grid search on seed 0's data, its trials run by ``workers``."""
    with WorkerPool(workers) as pool:
        _, specs = experiment.problem(experiment.data(0))
        points = grid_points(specs, experiment.n_trials)
        return search(TrialPool(experiment, pool), points, experiment.trial_steps)


def member_deviation(base: ToyExperiment, seeds: list[int], cycles: int) -> float:
    """The largest absolute difference, over every recorded quantity of ``cycles`` cycles,
    between each member of a population of ``seeds`` and the single run of its seed."""
    exp = _fixed_length(base, cycles)
    members, single, worst = exp.build(tuple(seeds)).run(), exp.build(seeds[0]), 0.0
    for seed, member in zip(seeds, members, strict=True):
        single.reset(seed)
        run = single.run()
        recorded = ("values", "stddev", "weight_loss", "hyper_loss")
        pairs = [(getattr(member, k), getattr(run, k)) for k in recorded]
        pairs += [(member.metrics[k], run.metrics[k]) for k in run.metrics]
        worst = max([worst, *(float(np.max(np.abs(a - b))) for a, b in pairs)])
    return worst


def _fixed_length(base: ToyExperiment, cycles: int) -> ToyExperiment:
    """``base`` run for exactly ``cycles`` cycles in one chunk (no early stop)."""
    return dataclasses.replace(
        base, max_cycles=cycles, chunk_cycles=cycles, snapshot_every=cycles, target=None
    )


def full_run_memory(cycles: int = 10000) -> dict[str, float]:
    """A fresh process runs the default toy experiment for ``cycles`` cycles with trajectory
    recording; returns its wall time (compile included), its peak resident memory, and the
    part of that peak above the baseline of a process that has imported TensorFlow and stn.

    The total counts TensorFlow's file-backed library pages, which vary with the page cache
    (917-1016 MiB for the same run on one machine); the part above the baseline is what this
    code allocates, and is what a memory claim should bound."""
    out = subprocess.run(
        [sys.executable, "-m", "stn.experiments.benchmark", "full-run", str(cycles)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


#: The single-run comparison's rows: the implementation, whether XLA compiles each loop body as
#: one function (:data:`stn.util.xla.ONE_FUNCTION_LOOPS`), and where the random numbers come from
#: (``STNConfig.draws``; the JAX toy draws per chunk). The last row is the reference.
SINGLE_RUNS = {
    "TensorFlow, K=1000 XLA": ("tf", False, "per_step"),
    "TensorFlow, K=1000 XLA, one-function loop": ("tf", True, "per_step"),
    "TensorFlow, K=1000 XLA, one-function loop, draws per chunk": ("tf", True, "per_chunk"),
    "JAX, K=1000, one-function loop": ("jax", True, "per_chunk"),
}


def single_runs(variant_name: str, cycles: int, repeats: int) -> dict[str, dict[str, object]]:
    """One run of ``cycles`` cycles of the toy variant, each way of :data:`SINGLE_RUNS`, each in
    a fresh process: its first run end to end (building and compiling included, the imports
    not), its compile time, and its median µs per cycle over ``repeats`` runs from other seeds.
    The JAX row (:mod:`stn.experiments.jax_toy`) is skipped, with a note, without JAX. Ratios
    are against the JAX row."""
    rows: dict[str, dict[str, object]] = {}
    for name, (impl, one_function, draws) in SINGLE_RUNS.items():
        if impl == "jax" and importlib.util.find_spec("jax") is None:
            rows[name] = {"skipped": "JAX is not installed: pip install -e '.[bench]'"}
            continue
        env = {**os.environ, "XLA_FLAGS": xla.flags(os.environ.get("XLA_FLAGS", ""), one_function)}
        command = [sys.executable, "-m", "stn.experiments.benchmark", "single-run", impl]
        out = subprocess.run(
            [*command, variant_name, str(cycles), str(repeats), draws],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if out.returncode:
            error = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the {name!r} run of variant {variant_name!r} failed: {error}")
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
    reference = rows[list(SINGLE_RUNS)[-1]]
    for row in rows.values():
        if "skipped" not in row and "skipped" not in reference:
            row["cost_vs_jax"] = row["us_per_cycle"] / reference["us_per_cycle"]
            row["end_to_end_vs_jax"] = row["first_run_seconds"] / reference["first_run_seconds"]
    return rows


def _single_run(
    impl: str, variant_name: str, cycles: int, repeats: int, draws: str = "per_step"
) -> dict[str, object]:
    from stn.experiments.toy import variant

    exp = _fixed_length(variant(variant_name, draws=draws), cycles)
    if impl == "jax":
        from stn.experiments import jax_toy

        return jax_toy.time_run(exp, cycles, repeats)
    exp = dataclasses.replace(exp, chunk_cycles=1000, snapshot_every=200)
    return time_runs(exp, [exp.seed + r for r in range(1, repeats + 1)], count_build=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB: VmHWM, which (unlike ru_maxrss, inherited
    across fork and exec on Linux) counts this program only."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _full_run(cycles: int) -> None:
    from stn.experiments.toy import variant

    baseline_mib = peak_rss_mib()  # TensorFlow and stn imported, nothing built
    exp = variant("default", max_cycles=cycles, target=None)
    start = time.perf_counter()
    trajectory = exp.build().run()
    seconds = time.perf_counter() - start
    peak_mib = peak_rss_mib()
    print(
        json.dumps(
            {
                "cycles": trajectory.cycles,
                "seconds": seconds,
                "peak_mib": peak_mib,
                "baseline_mib": baseline_mib,
                "added_mib": peak_mib - baseline_mib,
                "compile_seconds": trajectory.extra["compile_seconds"],
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "full-run":
        _full_run(int(sys.argv[2]))
    elif len(sys.argv) == 7 and sys.argv[1] == "single-run" and sys.argv[2] in ("tf", "jax"):
        impl, name, draws = sys.argv[2], sys.argv[3], sys.argv[6]
        cycles, repeats = int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(_single_run(impl, name, cycles, repeats, draws)))
    else:
        sys.exit(
            "usage: python -m stn.experiments.benchmark full-run CYCLES\n"
            "       python -m stn.experiments.benchmark single-run tf|jax VARIANT CYCLES REPEATS "
            "per_step|per_chunk"
        )
