"""Outputs are written whole and byte-reproducibly: figures, animations and results files, with
no version or date stamped into them."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from stn.experiments.toy import ToyExperiment
from stn.tooling import plots
from stn.util.io import write_json


@pytest.fixture(scope="module")
def trajectory():
    exp = ToyExperiment(max_cycles=40, chunk_cycles=20, snapshot_every=10, target=None)
    return exp.build().run()


def test_design_doc_plots_and_animation(tmp_path, trajectory):
    figures = plots.design_doc_plots(trajectory, ToyExperiment().validation_range)
    assert set(figures) == {"x_range", "scale", "distance", "weight_loss", "hyper_loss"}
    for name, fig in figures.items():
        plots.save_figure(fig, tmp_path / f"{name}.png")
        assert Image.open(tmp_path / f"{name}.png").format == "PNG"
    grid = ToyExperiment().task().grid.numpy()
    gif = plots.function_animation(trajectory, grid, tmp_path / "f.gif")
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == len(trajectory.snapshots) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{n}.png" for n in figures] + ["f.gif"]
    )


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "data.json"
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg"])
def test_the_same_figure_gives_the_same_bytes(tmp_path, trajectory, suffix):
    paths = [tmp_path / f"{name}.{suffix}" for name in ("a", "b")]
    for path in paths:
        plots.save_figure(plots.trajectory_plot(trajectory.values[:, 0], "x_range", "x"), path)
    first, second = (path.read_bytes() for path in paths)
    assert first == second
    assert b"Matplotlib" not in first and b"matplotlib.org" not in first
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]


def test_the_same_animation_gives_the_same_bytes(tmp_path, trajectory):
    paths = [tmp_path / name for name in ("a.gif", "b.gif")]
    for path in paths:
        plots.function_animation(trajectory, ToyExperiment().task().grid.numpy(), path, fps=5)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes()[:6] == b"GIF89a"


def test_a_failed_save_leaves_no_file(tmp_path):
    fig = plt.figure()
    with pytest.raises(ValueError, match="is not supported"):
        plots.save_figure(fig, tmp_path / "figure.notaformat")
    assert list(tmp_path.iterdir()) == []
    fig.gca().plot(np.arange(3))
    plots.save_figure(fig, tmp_path / "figure.png")
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
