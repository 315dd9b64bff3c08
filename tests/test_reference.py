"""The design document's eager loop, kept as the benchmark's speed baseline, still trains."""

import numpy as np

from stn.experiments import reference


def test_design_doc_loop_trains_and_times_its_cycles():
    loop = reference._DesignLoop(seed=39, batch_size=100)
    for _ in range(5):
        loop.weights_training_step()
    for _ in range(40):
        loop.cycle()
    x_range, scale, wloss, hloss, dist = np.array(loop.trajectory).T
    assert len(loop.trajectory) == 40 and np.isfinite(np.array(loop.trajectory)).all()
    assert x_range[-1] != x_range[0] and scale[-1] != scale[0]  # λ and its scale are tuned
    assert 0.01 < x_range.min() and x_range.max() < 10  # within the design document's bounds
    assert wloss[-10:].mean() < wloss[:10].mean()  # the weights learn
    assert reference.design_doc_loop(cycles=2) > 0
