"""Long runs survive and stay honest: checkpoint/resume (with a real kill), the divergence guard,
bit-identical reruns, TensorBoard summaries and the progress bar."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from stn.experiments.toy import ToyExperiment, study, variant
from stn.method.models import ToyHyperNet
from stn.method.stn import STN
from stn.tasks.toy import ToyTask, x_range_spec
from stn.training.loop import Trainer
from stn.training.record import DivergenceError, Trajectory

FAST = dict(max_cycles=200, chunk_cycles=50, snapshot_every=50, target=None, jit_compile=False)
ARRAYS = ("values", "stddev", "weight_loss", "hyper_loss", "eval_cycles", "snapshots")


def assert_identical(a: Trajectory, b: Trajectory) -> None:
    """Bit-identical trajectories: every recorded array, every metric."""
    for key in ARRAYS + ("snapshot_cycles",):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.metrics.keys() == b.metrics.keys()
    for key in a.metrics:
        np.testing.assert_array_equal(a.metrics[key], b.metrics[key], err_msg=key)


def test_same_seed_gives_bit_identical_trajectories():
    """Two independently built XLA runs (the default mode) of one seed agree bit for bit."""
    compiled = {**FAST, "jit_compile": True}
    first = variant("default", seed=7, **compiled).build().run()
    second = variant("default", seed=7, **compiled).build().run()
    assert_identical(first, second)
    assert not np.array_equal(
        first.values[-1], variant("default", seed=8, **FAST).build().run().values[-1]
    )


def test_resume_in_process_continues_the_same_run(tmp_path):
    reference = variant("default", **FAST).build().run()
    variant("default", **FAST).build().run(max_cycles=100, checkpoint_dir=tmp_path)
    resumed = variant("default", **FAST).build().run(checkpoint_dir=tmp_path)
    assert_identical(reference, resumed)
    # a finished run resumes to its end without training further
    again = variant("default", **FAST).build().run(checkpoint_dir=tmp_path)
    assert_identical(reference, again)


def test_resume_refuses_a_different_run(tmp_path):
    variant("default", **FAST).build().run(max_cycles=50, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"holds a different run \(differs in seed\)"):
        variant("default", seed=1, **FAST).build().run(checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"differs in config"):
        variant("default", **{**FAST, "hyper_lr": 0.01}).build().run(checkpoint_dir=tmp_path)


def test_checkpoint_and_log_intervals_are_checked(tmp_path):
    trainer = variant("default", **FAST).build()
    with pytest.raises(ValueError, match=r"checkpoint_every=75 must be a positive multiple of"):
        trainer.run(checkpoint_dir=tmp_path, checkpoint_every=75)
    with pytest.raises(ValueError, match=r"log_every=0 must be a positive multiple"):
        trainer.run(log_dir=tmp_path, log_every=0)


def run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "stn.experiments.toy", "--no-progress", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def latest_cycle(directory: Path) -> int:
    path = tf.train.latest_checkpoint(str(directory))
    return int(path.rsplit("-", 1)[1]) if path else 0


def test_a_killed_run_resumes_to_the_uninterrupted_trajectory(tmp_path):
    """SIGKILL a real training process mid-run, rerun the same command, compare bit for bit."""
    args = ["--seed", "5", "--max-cycles", "3000", "--set", "target=None"]
    args += ["--set", "chunk_cycles=100", "--set", "snapshot_every=100"]
    args += ["--set", "jit_compile=False"]  # ~1 ms per cycle: slow enough to kill mid-run
    reference = run_cli([*args, "--output", str(tmp_path / "reference.npz")])
    checkpoints = tmp_path / "checkpoints"
    resumable = [*args, "--checkpoint-dir", str(checkpoints), "--output", str(tmp_path / "r.npz")]
    victim = run_cli(resumable)
    deadline = time.monotonic() + 120
    while latest_cycle(checkpoints) < 800 and victim.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = latest_cycle(checkpoints)
    assert victim.returncode == -signal.SIGKILL
    assert 800 <= killed_at < 3000, killed_at
    assert not (tmp_path / "r.npz").exists()

    resumed = run_cli(resumable)
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    assert reference.wait() == 0, reference.stderr.read().decode()
    assert_identical(
        Trajectory.load(tmp_path / "reference.npz"), Trajectory.load(tmp_path / "r.npz")
    )


class PoisonedTask(ToyTask):
    """The toy task whose training loss turns NaN from its ``at``-th evaluation on."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, tf.Variable(0)

    def train_loss(self, model, batch, hnet_input, values, generator):
        self.calls.assign_add(1)
        loss = super().train_loss(model, batch, hnet_input, values, generator)
        return tf.where(self.calls >= self.at, tf.constant(np.nan, loss.dtype), loss)


def test_divergence_is_caught_at_its_cycle_and_nothing_is_saved(tmp_path):
    exp = variant("per-unit scale", **FAST)  # one training loss per weight step (joint step)
    # 5 warm-up steps, then cycle c makes calls 5 + 2c - 1 and 5 + 2c: call 118 is in cycle 57
    trainer = Trainer(STN(PoisonedTask(at=118), [x_range_spec()], ToyHyperNet, exp.config()))
    with pytest.raises(DivergenceError, match=r"diverged at cycle 57: training loss is nan") as err:
        trainer.run(checkpoint_dir=tmp_path)
    assert err.value.cycle == 57
    assert trainer.stn.task.calls.numpy() == 5 + 2 * 100  # stopped at the end of that chunk
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-50")  # the last good state


def test_injected_nan_and_inf_are_named():
    trainer = variant("default", **FAST).build()
    trainer.run(max_cycles=50)
    trainer.hyperparameters.scale.assign([np.inf])
    with pytest.raises(DivergenceError, match=r"perturbation scale of x_range is nan") as err:
        trainer.run(max_cycles=50)
    assert err.value.cycle == 1
    trainer.reset(0)
    weight = trainer.model.elementary_weights[0]
    weight.assign(tf.fill(weight.shape, tf.constant(np.nan, weight.dtype)))
    with pytest.raises(DivergenceError, match=r"at cycle 1: training loss is nan"):
        trainer.run(max_cycles=50)


def test_tensorboard_summaries_match_the_trajectory(tmp_path):
    trajectory = variant("default", **FAST).build().run(log_dir=tmp_path, log_every=20)
    scalars: dict[str, dict[int, float]] = {}
    for path in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    expected = {
        "hyperparameters/x_range": trajectory.values[:, 0],
        "scales/x_range": trajectory.stddev[:, 0],
        "loss/train": trajectory.weight_loss,
        "loss/valid_objective": trajectory.hyper_loss,
        "metrics/distance": trajectory.metrics["distance"],
    }
    assert set(scalars) == set(expected)
    for tag, series in expected.items():
        assert sorted(scalars[tag]) == list(range(20, 201, 20)), tag
        logged = np.array([scalars[tag][step] for step in range(20, 201, 20)])
        np.testing.assert_allclose(logged, series[19::20], rtol=1e-6, err_msg=tag)


def test_progress_bar_shows_hyperparameters_and_distance(capsys):
    variant("default", **FAST).build().run(progress=True)
    err = capsys.readouterr().err
    assert "200/200" in err and "x_range=" in err and "distance=" in err


def test_trajectory_save_load_round_trip(tmp_path):
    trajectory = ToyExperiment(**FAST).build().run()
    trajectory.save(tmp_path / "run.npz")
    loaded = Trajectory.load(tmp_path / "run.npz")
    assert_identical(trajectory, loaded)
    assert loaded.names == trajectory.names and loaded.extra["config"]["max_cycles"] == 200
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary left behind


def test_an_interrupted_study_reruns_only_unfinished_seeds(tmp_path):
    exp = variant("default", **FAST)
    rows, runs = study(exp, [3, 4], progress=False, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_3", "seed_4"]
    (tmp_path / "seed_4" / "checkpoint").unlink()  # as if seed 4 had been killed at its start
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "seed_3").iterdir()}
    again, reruns = study(exp, [3, 4], progress=False, checkpoint_dir=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "seed_3").iterdir()} == finished
    assert again == rows
    for first, second in zip(runs, reruns, strict=True):
        assert_identical(first, second)


def test_tqdm_disable_silences_the_bars(capsys, monkeypatch):
    """The notebook runner sets TQDM_DISABLE: bars would print elapsed times into outputs."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    trajectory = variant("default", **FAST).build().run(progress=True)
    assert trajectory.cycles == 200 and capsys.readouterr().err == ""


def test_a_diverging_notebook_writes_no_figure_and_no_notebook(tmp_path):
    """The toy notebook at an absurd learning rate: the run cell fails, nothing is written."""
    import papermill

    from stn.tooling.notebooks import execute

    figures, output = tmp_path / "figures", tmp_path / "toy.ipynb"
    notebook = Path(__file__).parents[1] / "notebooks" / "toy_stn.ipynb"
    parameters = {"weight_lr": 1e200, "output_dir": str(figures), "max_cycles": 100}
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute(notebook, output, parameters)
    assert err.value.ename == "DivergenceError"
    assert "training diverged at cycle 1: training loss is" in err.value.evalue
    assert not output.exists() and list(tmp_path.iterdir()) in ([], [figures])
    assert not figures.exists() or list(figures.iterdir()) == []


def test_a_terminated_notebook_run_leaves_no_file(tmp_path):
    """SIGTERM the checked runner mid-notebook: no output, no temporary file beside it."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "3"}
    notebook.cells = [
        nbformat.v4.new_code_cell("seconds = 60", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import time\ntime.sleep(seconds)"),
    ]
    nbformat.write(notebook, tmp_path / "slow.ipynb")
    out = tmp_path / "executed" / "slow.ipynb"
    command = [
        sys.executable,
        "-m",
        "stn.tooling.notebooks",
        str(tmp_path / "slow.ipynb"),
        str(out),
    ]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(".slow.*")):  # the temporary output exists: papermill runs
        assert runner.poll() is None and time.monotonic() < deadline, runner.stderr.read()
        time.sleep(0.05)
    time.sleep(3)  # inside the kernel's sleep
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(out.parent.iterdir()) == []


def test_sup_distance_is_nan_when_a_prediction_is():
    from stn.tasks.metrics import sup_distance

    grid = tf.constant([0.0, 1.0, 2.0], tf.float64)
    assert float(sup_distance(grid, grid + 0.5)) == 0.5
    assert np.isnan(float(sup_distance(grid, tf.constant([0.0, np.nan, 2.0], tf.float64))))
