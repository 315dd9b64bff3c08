"""Figures: the design document's trajectory plots and the function animation.

Every function returns a matplotlib Figure (or writes a file atomically through ``stn.util.io``), so
notebooks only call and save.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

from stn.training.record import Trajectory
from stn.util.io import write_atomic

#: Metadata matplotlib would stamp into each format (its version, a date): left out, so the
#: same figure gives the same bytes.
NO_STAMPS = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` atomically (temporary file, then rename), byte-reproducibly, and close it."""
    fmt = Path(path).suffix.lstrip(".") or "png"

    def write(tmp: Path) -> None:
        with plt.rc_context({"svg.hashsalt": "stn"}):  # SVG element ids from a fixed salt
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt, metadata=NO_STAMPS.get(fmt))

    out = write_atomic(path, write)
    plt.close(fig)
    return out


def trajectory_plot(
    y: np.ndarray,
    ylabel: str,
    title: str,
    x: np.ndarray | None = None,
    log: bool = False,
    reference: float | None = None,
    reference_label: str = "",
) -> plt.Figure:
    """One trajectory against the cycle number."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(1, len(y) + 1) if x is None else x
    ax.plot(x, y, lw=1)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=0.8, label=reference_label)
        ax.legend(loc="best")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("cycle")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def design_doc_plots(trajectory: Trajectory, validation_range: float) -> dict[str, plt.Figure]:
    """The design document's five plots: x_range, scale, distance, weight and hyper losses."""
    t = trajectory
    i = t.names.index("x_range")
    return {
        "x_range": trajectory_plot(
            t.values[:, i],
            "x_range",
            "Hyperparameter x_range",
            reference=validation_range,
            reference_label="validation range",
        ),
        "scale": trajectory_plot(t.stddev[:, i], "softplus(s)", "Perturbation scale"),
        "distance": trajectory_plot(
            t.metrics["distance"],
            r"$\max |f(x) - x^2|$",
            "Sup-norm distance on the grid",
            x=t.eval_cycles,
            log=True,
        ),
        "weight_loss": trajectory_plot(
            t.weight_loss, "MSE", "Training loss (weight steps)", log=True
        ),
        "hyper_loss": trajectory_plot(
            t.hyper_loss,
            r"MSE $-\,\tau H$",
            "Validation objective (hyper steps)",
            log=False,
        ),
    }


def function_animation(
    trajectory: Trajectory, grid: np.ndarray, path: str | os.PathLike, fps: int = 10
) -> Path:
    """Animate the prediction on the grid over training against x², shading the current
    training range [−x_range, x_range]; written as a GIF with Pillow (no ffmpeg)."""
    t = trajectory
    i = t.names.index("x_range")
    grid = np.asarray(grid).ravel()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(grid, grid**2, "k--", lw=1, label="$x^2$")
    (line,) = ax.plot([], [], "b", lw=1.5, label="STN prediction")
    shade = ax.axvspan(0, 0, color="orange", alpha=0.2, label="training range")
    title = ax.set_title("")
    ax.set_xlim(grid.min(), grid.max())
    top = float(np.max(grid**2))
    ax.set_ylim(-0.5 * top, 1.5 * top)
    ax.legend(loc="upper center")

    def frame(k: int):
        cycle = int(t.snapshot_cycles[k])
        r = float(t.values[cycle - 1, i])
        line.set_data(grid, t.snapshots[k])
        shade.set_x(-r)
        shade.set_width(2 * r)
        title.set_text(f"cycle {cycle}: x_range = {r:.2f}")
        return line, shade, title

    anim = FuncAnimation(fig, frame, frames=len(t.snapshots), blit=False)
    out = write_atomic(path, lambda p: anim.save(p, writer=PillowWriter(fps=fps)))
    plt.close(fig)
    return out


def speed_plot(
    results: dict[str, dict[str, float]],
    population: dict[str, list[dict[str, float]]] | None = None,
    single: dict[str, dict[str, float]] | None = None,
) -> plt.Figure:
    """µs per cycle of each mode (log scale), each bar labelled with its speed-up over the
    design document's eager loop; with ``population`` (per workload, the rows of
    :func:`stn.experiments.benchmark.population_benchmark`), a second panel of the cost per
    member-cycle against the population size, with the toy's single runs of ``single``
    (:func:`stn.experiments.benchmark.single_runs`: TensorFlow and JAX) as horizontal lines."""
    names = list(results)
    fig, axes = plt.subplots(
        1, 2 if population else 1, figsize=(16 if population else 7, 0.45 * len(names) + 1.6)
    )
    ax = axes[0] if population else axes
    us = np.array([results[n]["us_per_cycle"] for n in names])
    colors = [
        "tab:red" if "eager" in n else "tab:blue" if "XLA" in n else "tab:gray" for n in names
    ]
    ax.barh(names, us, color=colors)
    ax.set_xscale("log")
    ax.invert_yaxis()
    for y, (n, u) in enumerate(zip(names, us, strict=True)):
        ax.text(
            u * 1.1, y, f"{u:,.0f} µs  ({results[n]['speedup']:,.0f}×)", va="center", fontsize=8
        )
    ax.set_xlim(us.min() / 2, us.max() * 30)
    ax.set_xlabel("µs per cycle (median; 2 weight + 2 hyper steps + evaluation)")
    ax.set_title("Cost per STN cycle on the toy problem, one run, this machine")
    if population:
        _population_panel(axes[1], population, single or {})
    fig.tight_layout()
    return fig


def _processes(workers: int) -> str:
    if workers == 1:
        return "one after another (compile included)"
    return f"in {workers} processes (start and compile included)"


def _population_panel(
    ax: plt.Axes,
    population: dict[str, list[dict[str, float]]],
    single: dict[str, dict[str, float]],
) -> None:
    """Cost per member-cycle against P, per workload: a population (steady; dashed, its first
    run with the compile) beside the same runs as single runs in worker processes (squares),
    and the toy's one-run costs in TensorFlow and JAX (horizontal lines, steady)."""
    sizes = sorted({r["members"] for rows in population.values() for r in rows})
    workload_colors = ("tab:blue", "tab:green", "tab:red", "tab:brown")
    for (name, rows), color in zip(population.items(), workload_colors, strict=False):
        lines = (
            ("us_per_member_cycle", "o-", 1.0, "population"),
            ("first_run_us_per_member_cycle", "o--", 0.5, "population, first run (compile)"),
            ("workers_us_per_member_cycle", "s:", 1.0,
             f"single runs, {_processes(rows[0]['workers'])}"),
        )  # fmt: skip
        members = [r["members"] for r in rows]
        for key, style, alpha, label in lines:
            values = [r[key] for r in rows]
            ax.plot(members, values, style, color=color, alpha=alpha, label=f"{name}: {label}")
    colors = ("tab:purple", "tab:orange", "black")
    for (name, row), color in zip(single.items(), colors, strict=False):
        if "us_per_cycle" in row:  # not a skipped row
            ax.axhline(row["us_per_cycle"], color=color, lw=1, label=f"toy, one run: {name}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(m) for m in sizes])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("members P (runs: seeds, or the trials of one seed)")
    ax.set_ylabel("µs per member-cycle")
    ax.set_title("Many runs: a population against worker processes")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: lines span P


def scaling_plot(rows: list[dict[str, float]]) -> plt.Figure:
    """µs per cycle against batch size, one line per network width (log-log)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for width in sorted({r["width"] for r in rows}):
        pts = sorted((r["batch_size"], r["us_per_cycle"]) for r in rows if r["width"] == width)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"width {width}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("µs per cycle")
    ax.set_title("Compiled chunks (K=10, XLA): cost vs batch and width")
    ax.legend()
    fig.tight_layout()
    return fig


# -- real data: STN against grid, random and TPE search ----------------------------------------

METHOD_COLORS = {
    "stn": "tab:red",
    "grid": "tab:blue",
    "random": "tab:green",
    "tpe": "tab:purple",
    "halving": "tab:brown",
    "pbt": "tab:orange",
}


def search_curves_plot(comparisons: list) -> plt.Figure:
    """Best validation loss found so far against training steps spent, per method (one line
    per seed; ``comparisons`` are ``stn.experiments.real_data.Comparison``)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, color in METHOD_COLORS.items():
        for k, c in enumerate(comparisons):
            r = c.results[method]
            label = f"{method} (total {r.steps:,} steps)" if k == 0 else None
            ax.step(r.curve_steps, r.curve_loss, where="post", color=color, lw=1.2, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training steps spent (log)")
    ax.set_ylabel("best validation loss so far")
    ax.set_title(f"Validation loss against cost (seeds: {len(comparisons)}, one line each)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def schedules_plot(comparisons: list) -> plt.Figure:
    """STN's hyperparameter schedules: the constrained value of each hyperparameter (top) and
    its perturbation scale softplus(s) (bottom) against training steps, one line per seed."""
    names = comparisons[0].trajectory.names
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.2), squeeze=False)
    for c in comparisons:
        t = c.trajectory
        steps = c.stn_steps(np.arange(1, t.cycles + 1))
        for j, name in enumerate(names):
            axes[0, j].plot(steps, t.values[:, j], lw=1, label=f"seed {c.seed}")
            axes[1, j].plot(steps, t.stddev[:, j], lw=1)
            axes[0, j].set_title(name)
    for j in range(len(names)):
        axes[1, j].set_xlabel("training steps")
    axes[0, 0].set_ylabel("value")
    axes[1, 0].set_ylabel("perturbation scale σ")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Hyperparameter schedules discovered by STN")
    fig.tight_layout()
    return fig


def trajectory_schedules_plot(trajectory: Trajectory) -> plt.Figure:
    """One run's hyperparameter schedules: each hyperparameter's constrained value (top) and
    perturbation scale softplus(s) (bottom) against the cycle."""
    names = trajectory.names
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.2), squeeze=False)
    cycles = np.arange(1, trajectory.cycles + 1)
    for j, name in enumerate(names):
        axes[0, j].plot(cycles, trajectory.values[:, j], lw=1)
        axes[1, j].plot(cycles, trajectory.stddev[:, j], lw=1)
        axes[0, j].set_title(name)
        axes[1, j].set_xlabel("cycle")
    axes[0, 0].set_ylabel("value")
    axes[1, 0].set_ylabel("perturbation scale σ")
    fig.suptitle("Hyperparameter schedule of one STN run")
    fig.tight_layout()
    return fig


OUTCOME_COLORS = {
    "success": "tab:green",
    "collapse": "tab:red",
    "stuck": "tab:orange",
    "other": "tab:gray",
}


def success_rate_plot(rates: dict[str, tuple[float, float, float]], threshold: float) -> plt.Figure:
    """Success rate per variant with its 95% Wilson interval; ``rates[name] = (rate, lo, hi)``."""
    names = list(rates)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    for y, name in enumerate(names):
        rate, lo, hi = rates[name]
        ax.errorbar(rate, y, xerr=[[rate - lo], [hi - rate]], fmt="o", capsize=4, color="tab:blue")
        ax.text(hi + 0.02, y, f"{rate:.0%}", va="center", fontsize=8)
    ax.axvline(threshold, color="k", ls="--", lw=0.8, label=f"target {threshold:.0%}")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("success rate over seeds (95% Wilson interval)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def outcome_plot(counts: dict[str, dict[str, int]]) -> plt.Figure:
    """Stacked bars: how many seeds of each variant ended in each outcome."""
    names = list(counts)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    left = np.zeros(len(names))
    for outcome, color in OUTCOME_COLORS.items():
        n = np.array([counts[name].get(outcome, 0) for name in names])
        ax.barh(names, n, left=left, color=color, label=outcome)
        left += n
    ax.invert_yaxis()
    ax.set_xlabel("seeds")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def final_state_plot(finals: dict[str, list[dict]]) -> plt.Figure:
    """Final x_range against final distance, one panel per variant, coloured by outcome."""
    names = list(finals)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharex=True, sharey=True
    )
    for ax, name in zip(axes.flat, names, strict=False):
        for r in finals[name]:
            ax.scatter(r["x_range"], r["distance"], s=14, color=OUTCOME_COLORS[r["outcome"]])
        ax.add_patch(plt.Rectangle((1.9, 1e-3), 1.1, 0.25 - 1e-3, color="tab:green", alpha=0.12))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("final x_range")
    for ax in axes[:, 0]:
        ax.set_ylabel("final distance")
    fig.tight_layout()
    return fig


def outcome_trajectories_plot(examples: dict[str, list[Trajectory]]) -> plt.Figure:
    """x_range and distance over cycles for a few runs of each outcome."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for outcome, runs in examples.items():
        for k, t in enumerate(runs):
            label = outcome if k == 0 else None
            color = OUTCOME_COLORS[outcome]
            top.plot(t.values[:, 0], color=color, lw=0.8, label=label)
            bottom.plot(t.eval_cycles, t.metrics["distance"], color=color, lw=0.8)
    top.set_yscale("log")
    top.set_ylabel("x_range")
    top.legend(fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("sup-norm distance")
    bottom.set_xlabel("cycle")
    fig.tight_layout()
    return fig


def diagnosis_plot(table, columns: dict[str, str]) -> plt.Figure:
    """One strip panel per diagnostic column: its value per seed, grouped by outcome.
    ``table`` is a pandas DataFrame with an ``outcome`` column; ``columns`` maps column → title."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 3.2), squeeze=False)
    order = [o for o in OUTCOME_COLORS if o in set(table["outcome"])]
    rng = np.random.default_rng(0)
    for ax, (column, title) in zip(axes[0], columns.items(), strict=True):
        for i, outcome in enumerate(order):
            y = table.loc[table["outcome"] == outcome, column].astype(float).to_numpy()
            x = i + rng.uniform(-0.15, 0.15, size=len(y))
            ax.scatter(x, y, s=12, color=OUTCOME_COLORS[outcome])
        ax.set_xticks(range(len(order)), order)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
