"""Metrics: the design document's sup-norm distance, accuracy, and binomial confidence intervals."""

from __future__ import annotations

import math

import tensorflow as tf


def sup_distance(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """max |y_true − y_pred| on the evaluation grid (E & Wang 2018's distance for x²), over the
    last axis (one per member of a population); NaN if any prediction is NaN (a plain max may
    skip NaNs, which would pass for a small distance)."""
    error = tf.abs(y_true - y_pred)
    return tf.where(
        tf.reduce_any(tf.math.is_nan(error), axis=-1),
        tf.constant(math.nan, error.dtype),
        tf.reduce_max(error, axis=-1),
    )


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial success rate."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(
            f"successes={successes}, trials={trials}: need 0 <= successes <= trials >= 1"
        )
    from scipy import stats  # the extra `experiments`: not a core dependency

    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    return min(p, max(0.0, centre - half)), max(
        p, min(1.0, centre + half)
    )  # p inside, despite rounding


def accuracy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Fraction of examples whose arg-max logit is the label (over the last batch axis)."""
    hits = tf.equal(tf.argmax(logits, axis=-1, output_type=labels.dtype), labels)
    return tf.reduce_mean(tf.cast(hits, logits.dtype), -1)
