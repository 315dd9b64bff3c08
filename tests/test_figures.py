"""Figures are written whole and byte-reproducibly: no version or date stamped into them."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from stn import plots
from stn.experiments import ToyExperiment


@pytest.fixture(scope="module")
def trajectory():
    exp = ToyExperiment(max_cycles=40, chunk_cycles=20, snapshot_every=10, target=None)
    return exp.build().run()


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
