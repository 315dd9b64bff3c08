"""Diagnostics of the toy's failure modes: dead ReLU units, the early hypergradient, the
strength of the hypernetwork's response, and an outcome label per run."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from stn.method.models import ToyHyperNet
from stn.training.loop import Trainer
from stn.training.record import Trajectory

OUTCOMES = ("success", "collapse", "stuck", "other")


#: The success window for x_range, as fractions of the validation range V ([1.9, 3] at V = 2),
#: and the collapse threshold (0.1 at V = 2).
SUCCESS_WINDOW = (0.95, 1.5)
COLLAPSE_BELOW = 0.05


def outcome(final: dict[str, float], validation_range: float, max_distance: float = 0.25) -> str:
    """success: distance ≤ ``max_distance`` and x_range in [0.95 V, 1.5 V] for validation range
    V; collapse: x_range fell below 0.05 V (the net only sees x ≈ 0); stuck: x_range reached
    the window but the net does not fit; other: anything else (undecided or overshooting)."""
    x, d = final["x_range"], final["distance"]
    low, high = (f * validation_range for f in SUCCESS_WINDOW)
    in_window = low <= x <= high
    if d <= max_distance and in_window:
        return "success"
    if x < COLLAPSE_BELOW * validation_range:
        return "collapse"
    if in_window:
        return "stuck"
    return "other"


def dead_units(model: ToyHyperNet, x: tf.Tensor, hnet_input: tf.Tensor) -> list[int]:
    """Hidden units of each ReLU layer that are inactive for every input in ``x``."""
    h = model.layers[0](x, hnet_input)
    dead = []
    for layer in model.layers[1:-1]:
        pre = layer(h, hnet_input)
        dead.append(int(np.sum(np.all(pre.numpy() <= 0, axis=0))))
        h = model.activation(pre)
    return dead


def kinks(prediction: np.ndarray, tol: float = 1e-4) -> int:
    """Grid points where the (piecewise-linear) prediction bends: |second difference| > tol.
    Zero kinks means the net is affine on the grid, and the best affine fit of an even target
    such as x² on a symmetric range is a constant."""
    return int(np.sum(np.abs(np.diff(np.asarray(prediction), 2)) > tol))


def hypergradient(trainer: Trainer, batches: int = 20) -> float:
    """dF/dλ at the current state, averaged over ``batches`` validation batches with the
    perturbation drawn as in a hyperparameter step (a fixed-seed generator, so no state of the
    run is consumed)."""
    gen = tf.random.Generator.from_seed(12345)
    hp, task = trainer.hyperparameters, trainer.task
    grads = []
    for _ in range(batches):
        batch = task.valid_batch(gen)
        noise = gen.normal([batch[0].shape[0], hp.size], dtype=hp.dtype)
        with tf.GradientTape() as tape:
            loss = task.valid_loss(
                trainer.model, batch, trainer.stn.network_input(hp.perturbed(noise))
            )
        grads.append(float(tape.gradient(loss, hp.unconstrained)[0]))
    return float(np.mean(grads))


def response_strength(trainer: Trainer) -> float:
    """Size of the prediction's change per unit of λ on the grid: mean |∂f(x)/∂λ|."""
    grid = trainer.task.grid
    with tf.GradientTape() as tape:
        hnet = trainer.stn.eval_input(grid.shape[0])
        tape.watch(hnet)
        out = trainer.model(grid, hnet)
    return float(tf.reduce_mean(tf.abs(tape.gradient(out, hnet))))


def diagnose_start(trainer: Trainer) -> dict[str, float]:
    """Measurements at initialisation: dead units on the validation range, the hypergradient
    and the response strength."""
    grid = trainer.task.grid
    dead = dead_units(trainer.model, grid, trainer.stn.eval_input(grid.shape[0]))
    return {
        "kinks_init": kinks(trainer.stn.evaluate()[1].numpy()),
        "dead_units_init": sum(dead),
        "dead_layer_init": any(d == trainer.model.layers[1].w.shape[1] for d in dead),
        "hypergradient_init": hypergradient(trainer),
        "response_init": response_strength(trainer),
    }


def diagnose_end(trainer: Trainer, trajectory: Trajectory) -> dict[str, float]:
    """Measurements after the run: outcome, dead units, early movement of x_range, scale."""
    grid = trainer.task.grid
    dead = dead_units(trainer.model, grid, trainer.stn.eval_input(grid.shape[0]))
    final = trajectory.final()
    early = min(200, trajectory.cycles) - 1
    return {
        **final,
        "outcome": outcome(final, trainer.task.validation_range),
        "cycles": trajectory.cycles,
        "kinks_end": kinks(trainer.stn.evaluate()[1].numpy()),
        "dead_units_end": sum(dead),
        "dead_layer_end": any(d == trainer.model.layers[1].w.shape[1] for d in dead),
        "x_range_cycle_200": float(trajectory.values[early, 0]),
        "scale_end": float(trajectory.stddev[-1, 0]),
        "scale_min": float(trajectory.stddev[:, 0].min()),
    }
