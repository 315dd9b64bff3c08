"""The replication check: compare the numbers of a rerun with the committed results files.

``make verify`` reruns every notebook into a scratch folder, then::

    python -m stn.tooling.verify figures build/verify/full/figures --scale full

compares every number of every committed results file (``*.json``) with the rerun's, each under a
stated tolerance, prints a table (quantity | committed | now | tolerance | ok) and exits 1 on any
mismatch. The tolerances:

* **exact** (to 1e-12) for what a seed fixes, when both were computed on the same platform with
  the same lock (``stn.util.environment``); on another platform those bits are not expected to
  match, so they are shown as not compared and the statistical checks decide;
* **Fisher** for a success rate over seeds: the two-sided Fisher exact test must not reject that
  the rerun's rate equals the committed one, at level 0.05 shared among a file's rates
  (Bonferroni); the committed rate's Wilson interval is shown beside it;
* **t interval** for a loss averaged over seeds: the rerun's mean must lie in the committed
  mean's 95% confidence interval;
* **ratio band** for what the code controls of its speed and memory: a speedup (two timings
  measured in one run, so the machine's speed cancels) and the memory a run adds above the
  TensorFlow-import baseline lie within a factor of the committed value (``TIMING_BAND``);
* **reported**, not compared, for absolute times (seconds, microseconds per cycle, compile time):
  they measure the machine and whatever else it runs as much as the code. At small scale (inside
  ``make test``) the ratio-band rows are reported too: a few cycles time mostly noise, and a
  bound that noise can cross does not belong in the test command.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from stn.tasks.metrics import wilson_interval

#: Absolute tolerance of an exact comparison.
EXACT = 1e-12
#: A speedup or added memory must lie within this factor of the committed one, by scale; None:
#: reported, not compared. Speedups seen at full scale on machines of this kind: 757-3235x for
#: the fastest mode (the eager loop slows most when the machine is shared); the same run's added
#: memory: 286-293 MiB. At small scale CI saw absolute times 5x off the reference (9456 against
#: 1732 µs per cycle), so nothing timed is gated there.
TIMING_BAND: dict[str, float | None] = {"full": 3.0, "small": None}
#: Keys that are records, not results: the environment, samples, and where a run kept its
#: Optuna study (``make verify`` keeps its own under build/verify).
NOT_NUMBERS = ("environment", "environment.*", "*_samples", "*_samples.*", "*.config.storage")
#: The field that names an item of a list of records (a method, a seed, a scaling point).
ITEM_KEYS = ("method", "seed", "members")


@dataclass(frozen=True)
class Rule:
    """How the numbers whose path matches ``pattern`` are compared: ``exact``, ``ratio`` (a
    ratio band, for speedups and added memory), or ``reported`` (not compared: an absolute
    time, which measures the machine and what else it ran as much as the code).
    ``show`` puts each number on its own row of the table; the others are summed up per file."""

    pattern: str
    kind: str
    show: bool = False


#: Per results file: the rules, first match wins; numbers no rule matches are compared exactly.
RULES: dict[str, tuple[Rule, ...]] = {
    "toy.json": (
        Rule("main.*", "exact", show=True),
        Rule("successes", "exact", show=True),
    ),
    "robustness.json": (Rule("variants.*.successes", "exact", show=True),),
    "speed.json": (
        Rule("*.traces", "exact"),
        Rule("scaling.*.cycles", "reported"),  # sized to run for a given time
        Rule("*.cycles", "exact"),
        Rule("scaling.*.width", "exact"),
        Rule("scaling.*.batch_size", "exact"),
        Rule("population.*.*.members", "exact"),
        Rule("population.*.*.workers", "exact"),
        Rule("modes.*.speedup", "ratio", show=True),
        Rule("population.*.*.gain", "ratio", show=True),  # against P = 1, in the same run
        Rule("full_run.added_mib", "ratio", show=True),
        Rule("single_runs.*.*.cost_vs_jax", "ratio", show=True),  # against JAX, in one run
        Rule("single_runs.*.*.end_to_end_vs_jax", "ratio", show=True),
        Rule("single_runs.*.*.cycles", "exact"),
        Rule("grid_search.*.speedup", "ratio", show=True),  # against float64 trials, one run
        Rule("grid_search.*.speedup_same_dtype", "ratio", show=True),
        Rule("grid_search.*.seconds", "reported"),
        Rule("grid_search.*.ray_start_seconds", "reported"),
        Rule("modes.*.us_per_cycle", "reported", show=True),
        Rule("full_run.seconds", "reported", show=True),
        Rule("full_run.peak_mib", "reported", show=True),  # counts TensorFlow's file-backed pages
        Rule("*", "reported"),
    ),
    "real_data.json": (
        Rule("table.*.seconds", "reported", show=True),
        Rule("table.*.valid_loss", "exact", show=True),
        Rule("table.*.test_loss", "exact", show=True),
        Rule("claims.*.as_good", "exact", show=True),
    ),
    "real_data_results.json": (Rule("*.seconds", "reported"),),
}


@dataclass
class Row:
    """One line of the table."""

    quantity: str
    committed: str
    now: str
    tolerance: str
    ok: bool | None  # None: not compared (another platform, or a reported time)

    def cells(self) -> list[str]:
        ok = {True: "ok", False: "MISMATCH", None: "not compared"}[self.ok]
        return [self.quantity, self.committed, self.now, self.tolerance, ok]


def leaves(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every scalar of a JSON document, with its dotted path; an item of a list of records is
    named by its ``method``, ``seed`` or ``members`` field, other items by their index."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            name = next((item[k] for k in ITEM_KEYS if isinstance(item, dict) and k in item), i)
            yield from leaves(item, f"{path}.{name}")
    else:
        yield path, node


def rule_for(file: str, path: str) -> Rule | None:
    """The rule for a number, or None for a record that is not compared."""
    if any(fnmatch.fnmatchcase(path, pattern) for pattern in NOT_NUMBERS):
        return None
    for rule in RULES.get(Path(file).name, ()):
        if fnmatch.fnmatchcase(path, rule.pattern):
            return rule
    return Rule("*", "exact")


def same_numbers(a: object, b: object) -> bool:
    """Equal, or both finite numbers within EXACT, or both NaN."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float):
        return a == b
    if not isinstance(b, int | float):
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= EXACT


def within_band(committed: object, now: object, band: float) -> bool:
    if not isinstance(committed, int | float) or not isinstance(now, int | float):
        return False
    if committed == 0 or now == 0:
        return committed == now
    return 1 / band <= now / committed <= band


def fmt(value: object, digits: int = 12) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "missing" if value is _MISSING else str(value)


_MISSING = object()


def judge(
    kind: str, value: object, other: object, same_platform: bool, rerun: bool, band: float | None
) -> tuple[bool | None, str, int]:
    """Whether one number agrees under its rule's kind: (ok, tolerance text, digits shown).

    ``ok`` is None for a number that is reported, not compared."""
    if kind == "ratio" and band is not None:
        return within_band(value, other, band), f"ratio in [1/{band:g}, {band:g}]", 4
    if kind in ("ratio", "reported"):
        return None, "reported (depends on the machine)", 4
    tolerance = f"exact (±{EXACT:g})"
    if other is _MISSING:  # on another platform a count can fall to zero and vanish
        return (False if same_platform or not rerun else None), tolerance, 12
    return (same_numbers(value, other) if same_platform else None), tolerance, 12


def summary_row(file: str, kind: str, group: list[Row]) -> Row:
    """One row standing for the numbers of one kind that are not shown one by one."""
    results = {row.ok for row in group}
    ok = False if False in results else (None if results == {None} else True)
    return Row(f"{file}: {len(group)} other numbers ({kind})", "…", "…", group[0].tolerance, ok)


def compare_file(
    file: str, committed: dict, now: dict | None, same_platform: bool, band: float | None
) -> list[Row]:
    """The rows for one results file: every number, by its rule, plus the statistical checks."""
    now_leaves = dict(leaves(now)) if now is not None else {}
    rows, hidden = [], {"exact": [], "ratio": [], "reported": []}
    for path, value in leaves(committed):
        rule = rule_for(file, path)
        if rule is None:
            continue
        other = now_leaves.get(path, _MISSING)
        ok, tolerance, digits = judge(rule.kind, value, other, same_platform, now is not None, band)
        row = Row(f"{file}: {path}", fmt(value, digits), fmt(other, digits), tolerance, ok)
        if rule.show or ok is False or other is _MISSING:
            rows.append(row)
        else:
            hidden[rule.kind].append(row)
    rows.extend(summary_row(file, kind, group) for kind, group in hidden.items() if group)
    rows.extend(statistical_rows(file, committed, now))
    return rows


def statistical_rows(file: str, committed: dict, now: dict | None) -> list[Row]:
    """Checks that hold across platforms: success rates against the committed ones (Fisher),
    means over seeds against the committed mean's 95% t interval."""
    name, rows = Path(file).name, []
    now = now or {}
    if name == "robustness.json":
        alpha = 0.05 / len(committed["variants"])  # Bonferroni: one false alarm in 20 reruns
        for variant, c in committed["variants"].items():
            n = now.get("variants", {}).get(variant)
            rows.append(rate_row(f"{file}: {variant} success rate", c, n, alpha))
    elif name == "toy.json":
        c = {"successes": committed["successes"], "runs": len(committed["seeds"])}
        n = None if "successes" not in now else {**now, "runs": len(now["seeds"])}
        rows.append(rate_row(f"{file}: seed-table success rate", c, n))
    elif name == "real_data.json":
        now_rows = {r["method"]: r for r in now.get("table", [])}
        for row in committed["table"]:
            for metric in ("valid_loss", "test_loss"):
                rows.append(mean_row(file, row, now_rows.get(row["method"]), metric))
    return [r for r in rows if r is not None]


def rate_row(label: str, committed: dict, now: dict | None, alpha: float = 0.05) -> Row:
    """A success rate against the committed one: the two-sided Fisher exact test of equal
    rates must not reject at level ``alpha`` (a Bonferroni share when a file holds several)."""
    k, n = committed["successes"], committed["runs"]
    low, high = wilson_interval(k, n)
    committed_text = f"{k}/{n} (Wilson 95% {low:.2f}-{high:.2f})"
    tolerance = f"same rate: Fisher exact p >= {alpha:.2g}"
    if now is None:
        return Row(label, committed_text, "missing", tolerance, False)
    k2, n2 = now["successes"], now["runs"]
    p = stats.fisher_exact([[k, n - k], [k2, n2 - k2]]).pvalue
    return Row(label, committed_text, f"{k2}/{n2} (p = {p:.2g})", tolerance, bool(p >= alpha))


def mean_row(file: str, committed: dict, now: dict | None, metric: str) -> Row | None:
    n = committed["seeds"]
    if n < 2:
        return None  # no spread to build an interval from: the exact rows decide
    half = stats.t.ppf(0.975, n - 1) * committed[f"{metric}_std"] / math.sqrt(n)
    low, high = committed[metric] - half, committed[metric] + half
    label = f"{file}: {committed['method']} {metric}, mean over {n} seeds"
    tolerance = f"95% t interval [{low:.4f}, {high:.4f}]"
    if now is None:
        return Row(label, fmt(committed[metric]), "missing", tolerance, False)
    return Row(
        label, fmt(committed[metric]), fmt(now[metric]), tolerance, bool(low <= now[metric] <= high)
    )


def results_files(folder: Path) -> list[str]:
    """The results files under a folder, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json"))


def compare(committed_dir: Path, now_dir: Path, scale: str) -> tuple[list[Row], list[str]]:
    """Every row of the table, and notes on environments that differ."""
    band = TIMING_BAND[scale]
    rows, notes = [], []
    files = results_files(committed_dir)
    if not files:
        raise ValueError(f"committed_dir={str(committed_dir)!r} holds no results files (*.json)")
    for file in files:
        committed = json.loads((committed_dir / file).read_text())
        path = now_dir / file
        now = json.loads(path.read_text()) if path.exists() else None
        same = now is not None and same_environment(committed, now)
        if now is not None and not same:
            notes.append(f"{file}: computed on another platform or lock; exact rows not compared")
        rows.extend(compare_file(file, committed, now, same, band))
    return rows, notes


def same_environment(committed: dict, now: dict) -> bool:
    """Both computed on the same platform with exactly the same lock installed. A record made
    before the platform record named the CPU's extensions and caches is compared on the fields
    both records have."""
    a, b = committed.get("environment", {}), now.get("environment", {})
    if not (a.get("matches_lock") and b.get("matches_lock")):
        return False
    pa, pb = a.get("platform", {}), b.get("platform", {})
    shared = set(pa) & set(pb)
    same_lock = a.get("lock_sha256") == b.get("lock_sha256")
    return same_lock and bool(shared) and all(pa[key] == pb[key] for key in shared)


def markdown(rows: list[Row]) -> str:
    lines = ["| quantity | committed | now | tolerance | ok |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("committed", type=Path, help="folder of the committed results files")
    parser.add_argument("now", type=Path, help="folder of the rerun's results files")
    parser.add_argument("--scale", choices=sorted(TIMING_BAND), default="full")
    args = parser.parse_args(argv)
    try:
        rows, notes = compare(args.committed, args.now, args.scale)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(rows))
    for note in notes:
        print(f"note: {note}")
    failed = [row for row in rows if row.ok is False]
    compared = sum(row.ok is not None for row in rows)
    print(f"{len(rows)} rows, {compared} compared, {len(failed)} mismatches")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
