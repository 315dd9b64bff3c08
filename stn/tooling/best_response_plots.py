"""Figures of the best-response notebook: the response, the hypergradient and where λ ends on
the ridge problem, and the toy's predicted against trained validation loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

SEED_COLORS = plt.get_cmap("tab10")


def response_plot(rows: Mapping[str, Sequence[dict]], coordinates: int = 3) -> plt.Figure:
    """(a) One row per variant: the validation loss of θ̂_φ(λ) (φ frozen at the end of each
    run, one line per seed) and of θ*(λ) over the window around λ_final; the ``coordinates``
    entries of θ with the steepest true slope, for the first seed; the response error and
    1 − slope cosine along the runs."""
    fig, axes = plt.subplots(len(rows), 3, figsize=(14, 3.6 * len(rows)), squeeze=False)
    for (name, runs), (loss_ax, theta_ax, run_ax) in zip(rows.items(), axes, strict=True):
        _response_loss_panel(loss_ax, name, runs)
        _response_theta_panel(theta_ax, runs, coordinates)
        _response_run_panel(run_ax, runs)
    fig.tight_layout()
    return fig


def _response_loss_panel(loss_ax: plt.Axes, name: str, runs: Sequence[dict]) -> None:
    """F(θ̂_φ(λ)) per seed against F(θ*(λ)), with each run's λ_final and λ*."""
    for k, row in enumerate(runs):
        c = row["curves"]
        color = SEED_COLORS(k % 10)
        loss_ax.plot(c["lam"], c["stn_loss"], color=color, lw=0.8, alpha=0.8)
        if k == 0:
            loss_ax.plot(c["lam"], c["true_loss"], "k", lw=2, label=r"$F(\theta^*(\lambda))$")
        loss_ax.plot(
            row["lambda_final"], np.interp(row["lambda_final"], c["lam"], c["stn_loss"]),
            "o", color=color, ms=4,
        )  # fmt: skip
    loss_ax.plot([], [], color="gray", lw=0.8, label=r"$F(\hat\theta_\phi(\lambda))$, per seed")
    loss_ax.axvline(runs[0]["lambda_star"], color="k", ls=":", lw=0.8, label=r"$\lambda^*$")
    loss_ax.set_xscale("log")
    loss_ax.set_xlabel(r"$\lambda$")
    loss_ax.set_ylabel("validation loss")
    loss_ax.set_title(f"{name}: the response's validation loss, φ frozen", fontsize=9)
    loss_ax.legend(fontsize=7)


def _response_theta_panel(theta_ax: plt.Axes, runs: Sequence[dict], coordinates: int) -> None:
    """The first seed's steepest weights: θ̂_φ,j(λ) against θ*_j(λ)."""
    c = runs[0]["curves"]
    i = np.argmin(np.abs(c["lam"] - runs[0]["lambda_final"]))
    steep = np.argsort(-np.abs(np.gradient(c["true_theta"][:, :-1], axis=0)[i]))[:coordinates]
    for j, coord in enumerate(steep):
        color = SEED_COLORS(j)
        theta_ax.plot(c["lam"], c["true_theta"][:, coord], color=color, lw=2)
        theta_ax.plot(c["lam"], c["stn_theta"][:, coord], color=color, ls="--", lw=1.2)
    theta_ax.plot([], [], "k", lw=2, label=r"$\theta^*_j(\lambda)$")
    theta_ax.plot([], [], "k--", lw=1.2, label=r"$\hat\theta_{\phi,j}(\lambda)$")
    theta_ax.axvline(runs[0]["lambda_final"], color="gray", lw=0.8, label=r"$\lambda_{final}$")
    theta_ax.set_xscale("log")
    theta_ax.set_xlabel(r"$\lambda$")
    theta_ax.set_title(f"seed {runs[0]['seed']}: steepest weights", fontsize=9)
    theta_ax.legend(fontsize=7)


def _response_run_panel(run_ax: plt.Axes, runs: Sequence[dict]) -> None:
    """Response error and 1 − slope cosine at every snapshot of every run."""
    for k, row in enumerate(runs):
        r = row["run"]
        label = (None, None) if k else ("response error", "1 − slope cosine")
        run_ax.plot(r["snapshot_cycles"], r["response_error"], color="tab:blue", lw=0.7,
                    alpha=0.7, label=label[0])  # fmt: skip
        run_ax.plot(r["snapshot_cycles"], 1 - r["slope_cosine"], color="tab:red", lw=0.7,
                    alpha=0.7, label=label[1])  # fmt: skip
    run_ax.set_yscale("log")
    run_ax.set_xlabel("cycle")
    run_ax.set_title("along the runs (every seed)", fontsize=9)
    run_ax.legend(fontsize=7)


def hypergradient_plot(rows: Mapping[str, Sequence[dict]]) -> plt.Figure:
    """(b) One row per variant: the STN's and the exact hypergradient (per log λ) along the
    first seed's run; every seed's STN hypergradient against the exact one."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 3.6 * len(rows)), squeeze=False)
    for (name, runs), (time_ax, scatter_ax) in zip(rows.items(), axes, strict=True):
        r = runs[0]["run"]
        time_ax.plot(r["eval_cycles"], r["true_hypergradient"], "k", lw=1.5, label="exact")
        time_ax.plot(r["eval_cycles"], r["stn_hypergradient"], color="tab:orange", lw=0.8,
                     label="STN")  # fmt: skip
        time_ax.axhline(0, color="gray", lw=0.5)
        time_ax.set_xscale("log")
        time_ax.set_yscale("symlog", linthresh=1e-2)
        time_ax.set_xlabel("cycle")
        time_ax.set_ylabel(r"$dF/d\log\lambda$")
        time_ax.set_title(f"{name}, seed {runs[0]['seed']}", fontsize=9)
        time_ax.legend(fontsize=7)
        for k, row in enumerate(runs):
            r = row["run"]
            scatter_ax.scatter(r["true_hypergradient"], r["stn_hypergradient"], s=4,
                               color=SEED_COLORS(k % 10), alpha=0.5)  # fmt: skip
        lim = max(
            max(np.max(np.abs(row["run"]["true_hypergradient"])) for row in runs),
            max(np.max(np.abs(row["run"]["stn_hypergradient"])) for row in runs),
        )
        scatter_ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label="equal")
        scatter_ax.axhline(0, color="gray", lw=0.5)
        scatter_ax.axvline(0, color="gray", lw=0.5)
        scatter_ax.set_xscale("symlog", linthresh=1e-2)
        scatter_ax.set_yscale("symlog", linthresh=1e-2)
        scatter_ax.set_xlabel(r"exact $\lambda\, dF(\theta^*(\lambda))/d\lambda$")
        scatter_ax.set_ylabel(r"STN $dF(\hat\theta_\phi)/d\log\lambda$")
        scatter_ax.set_title(f"{name}: every evaluation of every seed", fontsize=9)
        scatter_ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lambda_plot(
    rows: Mapping[str, Sequence[dict]],
    sweep: Mapping[str, Sequence[dict]],
    curves: Mapping[str, np.ndarray],
    band_sigmas: float,
) -> plt.Figure:
    """(c) Left: λ_final of each seed per variant (adaptive σ), against λ* and the band of
    ``band_sigmas`` perturbation scales (in log λ) around it. Right: λ_final with σ held fixed,
    against the predicted fixed points of the STN in equilibrium (joint and Delta-STN's split
    weight step) and the minimiser of the smoothed objective, as functions of σ."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    _lambda_adaptive_panel(left, rows, band_sigmas)
    _lambda_fixed_panel(right, rows, sweep, curves)
    fig.tight_layout()
    return fig


def _lambda_adaptive_panel(
    left: plt.Axes, rows: Mapping[str, Sequence[dict]], band_sigmas: float
) -> None:
    """λ_final of each seed per variant, its ±band_sigmas·σ band, and the predicted λ."""
    names = list(rows)
    lam_star = next(iter(rows.values()))[0]["lambda_star"]
    for i, name in enumerate(names):
        runs = rows[name]
        lam = np.array([r["lambda_final"] for r in runs])
        half = np.array([band_sigmas * r["sigma_final"] * r["log_lambda_per_u"] for r in runs])
        x = i + np.linspace(-0.2, 0.2, len(runs))
        left.errorbar(x, lam, yerr=[lam - lam * np.exp(-half), lam * np.exp(half) - lam],
                      fmt="o", ms=4, lw=0.8, capsize=2, color=SEED_COLORS(i),
                      label=f"{name}: ±{band_sigmas:g}σ band")  # fmt: skip
        left.plot(x, [r["lambda_predicted"] for r in runs], "kx", ms=5,
                  label="predicted (equilibrium at σ_final)" if i == 0 else None)  # fmt: skip
    left.axhline(lam_star, color="k", ls=":", lw=1, label=r"$\lambda^*$")
    left.set_yscale("log")
    left.set_xticks(range(len(names)), names)
    left.set_ylabel(r"$\lambda_{final}$")
    left.set_title("where λ ends (σ tuned by the entropy term)", fontsize=9)
    left.legend(fontsize=7)


def _lambda_fixed_panel(
    right: plt.Axes,
    rows: Mapping[str, Sequence[dict]],
    sweep: Mapping[str, Sequence[dict]],
    curves: Mapping[str, np.ndarray],
) -> None:
    """λ_final at each fixed σ against the predicted fixed points as functions of σ."""
    names = list(rows)
    lam_star = next(iter(rows.values()))[0]["lambda_star"]
    right.plot(curves["sigma"], curves["joint"], "k-", lw=1.2, label="predicted, joint step")
    right.plot(curves["sigma"], curves["split"], "k--", lw=1.2, label="predicted, split step")
    right.plot(curves["sigma"], curves["smoothed"], color="tab:gray", ls="-.", lw=1.2,
               label=r"argmin $E_\varepsilon F(\theta^*(\lambda(u+\varepsilon)))$")  # fmt: skip
    right.axhline(lam_star, color="k", ls=":", lw=1, label=r"$\lambda^*$")
    for i, (name, runs) in enumerate(sweep.items()):
        sigma = np.array([r["sigma_final"] for r in runs])
        jitter = 1 + 0.03 * (i - (len(sweep) - 1) / 2)
        right.scatter(sigma * jitter, [r["lambda_final"] for r in runs], s=14,
                      color=SEED_COLORS(names.index(name) if name in names else i),
                      label=f"{name}, σ fixed")  # fmt: skip
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("perturbation scale σ (of u)")
    right.set_ylabel(r"$\lambda_{final}$")
    right.set_title("the perturbation's bias", fontsize=9)
    right.legend(fontsize=7)


def toy_sweep_plot(sweep: Mapping[str, object], validation_range: float, factor: float,
                   interval: tuple[float, float]) -> plt.Figure:  # fmt: skip
    """The validation loss the frozen hypernetwork predicts at each ``x_range`` against
    networks trained from scratch there (the best restart, the range and every seed), the run's
    final ``x_range``, the validation range, and the interval where the prediction lies within
    ``factor`` of the best restart."""
    x, truth = np.asarray(sweep["x_range"]), np.asarray(sweep["truth"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.fill_between(x, truth.min(axis=1), truth.max(axis=1), color="tab:blue", alpha=0.2,
                    label="trained from scratch: range over seeds")  # fmt: skip
    for j in range(truth.shape[1]):
        ax.plot(x, truth[:, j], ".", color="tab:blue", ms=4)
    ax.plot(x, truth.min(axis=1), "o-", color="tab:blue", lw=1.5, ms=3, label="best restart")
    ax.plot(x, sweep["predicted"], "s-", color="tab:orange", lw=1.5, ms=3,
            label="STN prediction, φ frozen")  # fmt: skip
    if np.all(np.isfinite(interval)):
        ax.axvspan(*interval, color="tab:green", alpha=0.12,
                   label=f"prediction within ×{factor:g} of the best restart")  # fmt: skip
    ax.axvline(sweep["x_final"], color="tab:orange", ls="--", lw=1, label="final x_range")
    ax.axvline(validation_range, color="k", ls=":", lw=1, label="validation range V")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16) if x.min() <= t <= x.max()]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("x_range")
    ax.set_ylabel("validation loss (MSE on the grid of [−V, V])")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
