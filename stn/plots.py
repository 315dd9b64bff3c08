"""Figures: the design document's trajectory plots and the function animation.

Every function returns a matplotlib Figure (or writes a file atomically through ``stn.io``), so
notebooks only call and save.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from stn.io import write_atomic  # noqa: E402
from stn.training import Trajectory  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` atomically (temporary file, then rename) and close it."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    out = write_atomic(path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", format=fmt))
    plt.close(fig)
    return out


def trajectory_plot(
    y: np.ndarray, ylabel: str, title: str, x: np.ndarray | None = None, log: bool = False,
    reference: float | None = None, reference_label: str = "",
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


def design_doc_plots(
    trajectory: Trajectory, validation_range: float
) -> dict[str, plt.Figure]:
    """The design document's five plots: x_range, scale, distance, weight and hyper losses."""
    t = trajectory
    i = t.names.index("x_range")
    return {
        "x_range": trajectory_plot(
            t.values[:, i], "x_range", "Hyperparameter x_range",
            reference=validation_range, reference_label="validation range",
        ),
        "scale": trajectory_plot(t.stddev[:, i], "softplus(s)", "Perturbation scale"),
        "distance": trajectory_plot(
            t.metrics["distance"], r"$\max |f(x) - x^2|$", "Sup-norm distance on the grid",
            x=t.eval_cycles, log=True,
        ),
        "weight_loss": trajectory_plot(t.weight_loss, "MSE", "Training loss (weight steps)", log=True),
        "hyper_loss": trajectory_plot(
            t.hyper_loss, r"MSE $-\,\tau H$", "Validation objective (hyper steps)", log=False,
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
