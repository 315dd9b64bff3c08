"""Outcome labels follow the run's own validation range; rates come with Wilson intervals."""

import pytest

from stn.experiments.diagnostics import outcome
from stn.tasks.metrics import wilson_interval


@pytest.mark.parametrize(
    "x_range, distance, validation_range, expected",
    [
        (2.0, 0.1, 2.0, "success"),
        (4.0, 0.1, 2.0, "other"),  # overshoots the window for V = 2 ...
        (4.0, 0.1, 3.0, "success"),  # ... and is inside the window [2.85, 4.5] for V = 3
        (2.0, 0.1, 3.0, "other"),  # short of V = 3
        (4.0, 2.7, 3.0, "stuck"),
        (0.12, 0.1, 3.0, "collapse"),  # below 0.05 V = 0.15
        (0.12, 0.1, 2.0, "other"),  # above 0.05 V = 0.1
    ],
)
def test_outcome_window_scales_with_the_validation_range(
    x_range, distance, validation_range, expected
):
    final = {"x_range": x_range, "distance": distance}
    assert outcome(final, validation_range) == expected


def test_window_at_the_design_documents_range_is_unchanged():
    for x, expected in ((1.9, "success"), (1.8999, "other"), (3.0, "success"), (3.0001, "other")):
        assert outcome({"x_range": x, "distance": 0.2}, 2.0) == expected


def test_wilson_interval_contains_the_rate():
    for k in (0, 1, 15, 29, 30):
        lo, hi = wilson_interval(k, 30)
        assert 0 <= lo <= k / 30 <= hi <= 1
    assert wilson_interval(15, 30) == pytest.approx((0.3315, 0.6685), abs=1e-3)
    with pytest.raises(ValueError, match="successes=31, trials=30"):
        wilson_interval(31, 30)
