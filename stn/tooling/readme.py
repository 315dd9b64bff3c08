"""The README's numbers, generated from the results files, so they cannot drift from them.

Each generated block of README.md sits between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->``; :data:`SECTIONS` renders NAME from ``figures/*.json``::

    python -m stn.tooling.readme            # rewrite the blocks of README.md (make readme)
    python -m stn.tooling.readme --check    # exit 1 if README.md differs from what the results give
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from stn.util import environment as environment_record
from stn.util.io import write_atomic

Results = Callable[[str], dict]


def glance(results: Results) -> str:
    """Results at a glance: robustness, speed and the real-data comparison in a few lines."""
    return "\n".join(
        [
            glance_robustness(results("robustness.json")),
            glance_speed(results("speed.json")),
            glance_real_data(results("real_data.json")),
        ]
    )


def glance_robustness(robustness: dict) -> str:
    """The toy's success rates: the default variant against the scales of the two sources."""
    variants, default = robustness["variants"], robustness["default_variant"]

    def rate(name: str) -> str:
        return f"{variants[name]['successes']} of {variants[name]['runs']}"

    delta = {"delta-stn": "for Delta-STN as published", "delta-stn + leaky ReLU": "with leaky ReLU"}
    delta_text = ", ".join(f"{rate(n)} {label}" for n, label in delta.items() if n in variants)
    return (
        f"- **Toy problem, default variant** ({default}): succeeds on {rate(default)} "
        f"held-out seeds, against {rate('per-layer scale')} for the design document's "
        f"per-layer scale and {rate('per-unit scale')} for the paper's per-unit scale"
        + (f"; {delta_text}." if delta_text else ".")
    )


def glance_speed(speed: dict) -> str:
    """The fastest compiled mode against the eager loop, and one full run's time and memory."""
    fastest = min(speed["modes"], key=lambda m: speed["modes"][m]["us_per_cycle"])
    eager = speed["modes"]["design doc (eager)"]["us_per_cycle"]
    run = speed["full_run"]
    return (
        f"- **Speed:** {speed['modes'][fastest]['us_per_cycle']:.0f} µs per cycle in "
        f"compiled chunks ({fastest}), against {eager / 1000:.0f} ms for the design "
        f"document's eager loop in the same run ({speed['modes'][fastest]['speedup']:.0f}×). "
        f"A {run['cycles']}-cycle run takes {run['seconds']:.1f} s, compilation included; "
        f"it allocates {run['added_mib']:.0f} MiB above the TensorFlow-import baseline "
        f"({run['peak_mib']:.0f} MiB peak in all)."
    )


def glance_real_data(real: dict) -> str:
    """STN's step fraction and validation loss against the searches, with the paired test."""
    rows = {r["method"]: r for r in real["table"]}
    paired = real["paired"]["valid_loss"]
    fraction = max(c["step_fraction"] for c in real["claims"])
    interval = paired["interval_95"]
    interval_text = (
        "" if interval is None else f", 95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    )
    return (
        f"- **Digits, {rows['stn']['seeds']} seeds:** STN spent {fraction:.3f} of each "
        f"search's training steps. Its best validation loss averaged "
        f"{rows['stn']['valid_loss']:.3f}, against "
        + ", ".join(f"{rows[m]['valid_loss']:.3f} for {m}" for m in ("tpe", "grid", "random"))
        + f". It was at least as good as the best search on {paired['as_good']} of "
        f"{paired['seeds']} seeds (STN minus best search: mean {paired['mean']:+.3f}"
        f"{interval_text}), so the paper's claim, tested by that interval reaching 0, "
        + _outcome(interval)
        + " here."
    )


def _outcome(interval: list[float] | None) -> str:
    """The claim's test in words: it holds when the 95% interval of STN minus the best search
    reaches 0."""
    return "is undecided" if interval is None else "holds" if interval[0] <= 0 else "fails"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table: the header, its rule, one line per row of cells."""
    lines = ["| " + " | ".join(cells) + " |" for cells in (header, *rows)]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])


def speed_table(results: Results) -> str:
    """Every mode of the benchmark: µs per cycle, ratio to the eager loop, compile time."""
    modes = results("speed.json")["modes"]
    return _table(
        ["mode", "µs per cycle", "× eager loop", "compile (s)"],
        (
            [name, f"{m['us_per_cycle']:.0f}", f"{m['speedup']:.1f}",
             f"{m['compile_seconds']:.1f}" if "compile_seconds" in m else "–"]
            for name, m in modes.items()
        ),
    )  # fmt: skip


def population_table(results: Results) -> str:
    """The population study: per workload and size, the cost per member-cycle three ways."""
    population = results("speed.json")["population"]
    header = ["workload", "members P", "cycles", "µs per member-cycle", "gain over P = 1",
              "first run, compile included", "single runs in worker processes"]  # fmt: skip
    return _table(
        header,
        (
            [name, str(r["members"]), str(r["cycles"]), f"{r['us_per_member_cycle']:.0f}",
             f"{r['gain']:.2f}",
             f"{r['first_run_us_per_member_cycle']:.0f}",
             f"{r['workers_us_per_member_cycle']:.0f} ({r['workers']})"]
            for name, rows in population.items()
            for r in rows
        ),
    )  # fmt: skip


def single_run_table(results: Results) -> str:
    """One toy run against JAX: per variant and way, its costs and their ratios to JAX."""
    single = results("speed.json").get("single_runs", {})
    header = ["variant", "run", "µs per cycle", "× JAX", "first run, compile included (s)",
              "× JAX", "compile (s)"]  # fmt: skip

    def cells(variant: str, name: str, r: dict) -> list[str]:
        if "skipped" in r:
            return [variant, name, r["skipped"], "", "", "", ""]
        return [variant, name, f"{r['us_per_cycle']:.0f}", f"{r['cost_vs_jax']:.2f}",
                f"{r['first_run_seconds']:.1f}", f"{r['end_to_end_vs_jax']:.2f}",
                f"{r['compile_seconds']:.1f}"]  # fmt: skip

    rows = (cells(v, name, r) for v, runs in single.items() for name, r in runs.items())
    return _table(header, rows)


def grid_search_table(results: Results) -> str:
    """One real-data grid search, by precision, workers and population: its wall time and
    speed-ups."""
    rows = results("speed.json").get("grid_search", [])
    header = ["precision", "workers", "population", "trials", "wall time (s)", "Ray's start (s)",
              "× float64, one after another", "× same precision, one after another",
              "best valid loss"]  # fmt: skip
    return _table(
        header,
        (
            [r["dtype"], str(r["workers"]), str(r.get("population", 1)), str(r["trials"]),
             f"{r['seconds']:.1f}",
             f"{r['ray_start_seconds']:.1f}" if r["workers"] > 1 else "–",
             f"{r['speedup']:.2f}", f"{r['speedup_same_dtype']:.2f}",
             f"{r['best_valid_loss']:.5f}"]
            for r in rows
        ),
    )  # fmt: skip


def real_data_table(results: Results) -> str:
    """The MLP's comparison (``real_data.json``): see :func:`comparison`."""
    return comparison(results("real_data.json"))


def real_data_cnn(results: Results) -> str:
    """The hyper CNN's comparison (``cnn/real_data.json``): see :func:`comparison`."""
    return comparison(results("cnn/real_data.json"))


def comparison(real: dict) -> str:
    """A real-data comparison: its table (mean ± sd over seeds, as the notebook writes it),
    the claim's test, and whether training flattened within the budget (the single runs' late
    improvement)."""
    from stn.experiments.real_data import markdown_table

    test, late = real["claim_test"], real["late_improvement"]
    interval = test["interval_95"]
    verdict = _outcome(interval) + (
        "" if interval is None else f" (95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}])"
    )
    gains = ", ".join(f"{m} {g['mean']:.3f} (at most {g['max']:.3f})" for m, g in late.items())
    return (
        markdown_table(real["table"])
        + f"\nSTN minus the best search: mean {test['mean']:+.3f}; the claim's test {verdict}. "
        "Over the last third of their steps, the single runs' best validation loss fell by, "
        f"relative and averaged over seeds: {gains}."
    )


#: The results files whose environment the README reports, in the order it lists them.
RESULTS_FILES = (
    "toy.json",
    "robustness.json",
    "speed.json",
    "best_response.json",
    "real_data.json",
    "cnn/real_data.json",
)


def environment(results: Results) -> str:
    """The versions and platforms that made the committed results, one line per environment
    (results files made apart, on different machines or locks, each say so)."""
    groups: dict[str, list[str]] = {}
    for name in RESULTS_FILES:
        groups.setdefault(_environment_line(results(name)["environment"]), []).append(name)
    if len(groups) == 1:
        return f"Made on {next(iter(groups))}"
    return "\n".join(f"- `{'`, `'.join(names)}`: made on {line}" for line, names in groups.items())


def _environment_line(env: dict) -> str:
    """One environment in words (the CPU's extensions where recorded); its lock named by hash,
    and whether it is today's lock."""
    p = env["platform"]
    packages = ", ".join(f"{name} {version}" for name, version in env["packages"].items())
    digest = env["lock_sha256"]
    which = (
        "today's `requirements.lock`"
        if digest == environment_record.lock_digest()
        else "an earlier `requirements.lock` (see `git log requirements.lock`)"
    )
    cpu = f"{p['cpu']}; {p['cpu_features']}" if p.get("cpu_features") else p["cpu"]
    return (
        f"{p['system']} {p['machine']} ({cpu}), {p['python']}, {p['libc']}, with "
        f"{packages}; every other package as pinned in {which}, sha256 `{digest[:12]}…`."
    )


SECTIONS: dict[str, Callable[[Results], str]] = {
    "glance": glance,
    "speed": speed_table,
    "population": population_table,
    "single_runs": single_run_table,
    "grid_search": grid_search_table,
    "real_data": real_data_table,
    "real_data_cnn": real_data_cnn,
    "environment": environment,
}
_BLOCK = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)


def render(text: str, figures: str | Path = "figures") -> str:
    """``text`` with every results block regenerated from the results files in ``figures``."""
    folder = Path(figures)

    def results(name: str) -> dict:
        return json.loads((folder / name).read_text())

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in SECTIONS:
            raise ValueError(f"README block {name!r} is unknown; allowed: {', '.join(SECTIONS)}")
        return f"{match.group(1)}{SECTIONS[name](results)}\n{match.group(4)}"

    return _BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate README.md's results blocks.")
    parser.add_argument("readme", nargs="?", default="README.md", type=Path)
    parser.add_argument("--figures", default="figures", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    rendered = render(text, args.figures)
    if args.check:
        if rendered != text:
            print(f"{args.readme} disagrees with {args.figures}/*.json: run `make readme`")
            return 1
        print(f"{args.readme} agrees with {args.figures}/*.json")
        return 0
    if rendered != text:
        write_atomic(args.readme, lambda p: p.write_text(rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
