"""Whole-or-nothing writes, the figures, and the Wilson interval.

The notebook runner's tests are in test_notebooks.py."""

import json

import numpy as np
import pytest
from PIL import Image

from stn import plots
from stn.experiments import ToyExperiment
from stn.io import write_json


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "data.json"
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    assert list(tmp_path.iterdir()) == [target]


def test_figures_and_animation(tmp_path):
    exp = ToyExperiment(max_cycles=40, chunk_cycles=20, snapshot_every=10, target=None)
    trainer = exp.build()
    trajectory = trainer.run()
    figures = plots.design_doc_plots(trajectory, exp.validation_range)
    assert set(figures) == {"x_range", "scale", "distance", "weight_loss", "hyper_loss"}
    for name, fig in figures.items():
        plots.save_figure(fig, tmp_path / f"{name}.png")
        assert Image.open(tmp_path / f"{name}.png").format == "PNG"
    gif = plots.function_animation(trajectory, trainer.task.grid.numpy(), tmp_path / "f.gif")
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == len(trajectory.snapshots) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{n}.png" for n in figures] + ["f.gif"]
    )
    assert np.isfinite(trajectory.metrics["distance"]).all()


def test_wilson_interval_contains_the_rate():
    from stn.metrics import wilson_interval

    for k in (0, 1, 15, 29, 30):
        lo, hi = wilson_interval(k, 30)
        assert 0 <= lo <= k / 30 <= hi <= 1
    assert wilson_interval(15, 30) == pytest.approx((0.3315, 0.6685), abs=1e-3)
    with pytest.raises(ValueError, match="successes=31, trials=30"):
        wilson_interval(31, 30)
