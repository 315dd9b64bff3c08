"""`make figures` is incremental and never leaves a half-made target that looks up to date.

Runs make on a scratch copy of the Makefile with stand-in files, so nothing real executes.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = ("toy_stn", "benchmark", "robustness", "real_data", "your_model", "best_response")
EXECUTED = (
    "toy_stn",
    "benchmark",
    "robustness",
    "real_data",
    "real_data_cnn",
    "your_model",
    "best_response",
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch project in which every executed notebook is newer than its sources."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    files = [
        "pyproject.toml",
        "requirements.lock",
        ".venv/.installed",
        "stn/__init__.py",
        "stn/method/stn.py",
        "stn/training/loop.py",
    ]
    files += [f"notebooks/{name}.ipynb" for name in NOTEBOOKS]
    files += [f"notebooks/executed/{name}.ipynb" for name in EXECUTED]
    for t, name in enumerate(files):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        stamp = 1_000_000 + (1000 if "executed" in name else t)
        os.utime(path, (stamp, stamp))
    return tmp_path


def make(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=tree, capture_output=True, text=True
    )


def rerun(tree: Path, *changed: str) -> set[str]:
    """The executed notebooks a dry run of ``make figures`` would rebuild after ``changed``
    files were edited."""
    for name in changed:
        os.utime(tree / name)  # now: newer than every executed notebook
    out = make(tree, "-n", "figures")
    assert out.returncode == 0, out.stderr
    runs = " ".join(line for line in out.stdout.splitlines() if "-m stn.tooling.notebooks" in line)
    return {name for name in EXECUTED if f"notebooks/executed/{name}.ipynb " in runs}


def test_up_to_date_figures_rerun_nothing(tree):
    assert rerun(tree) == set()


@pytest.mark.parametrize(
    "notebook, reruns",
    [
        ("toy_stn", {"toy_stn"}),
        ("robustness", {"robustness"}),
        ("best_response", {"best_response"}),
        # one notebook, two executions: the MLP and the CNN runs of the real-data notebook
        ("real_data", {"real_data", "real_data_cnn"}),
        ("your_model", {"your_model"}),
    ],
)
def test_changing_one_notebook_reruns_only_that_notebook(tree, notebook, reruns):
    assert rerun(tree, f"notebooks/{notebook}.ipynb") == reruns


def test_every_source_notebook_is_executed_by_make_figures():
    """A new notebook in notebooks/ needs a target in the Makefile (and a name above)."""
    assert {path.stem for path in (ROOT / "notebooks").glob("*.ipynb")} == set(NOTEBOOKS)


def test_help_lists_a_target_per_notebook(tree):
    out = make(tree, "help")
    assert out.returncode == 0, out.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)  # without the colours
    targets = {line.split()[0] for line in plain.splitlines() if line.strip()}
    for target in ("toy", "bench", "robustness", "real", "real-cnn", "your-model"):
        assert f"figures-{target}" in targets


@pytest.mark.parametrize("module", ["stn/__init__.py", "stn/method/stn.py", "stn/training/loop.py"])
def test_changing_the_package_reruns_every_notebook(tree, module):
    """Any module of the package, in a subpackage too (a `stn/*.py` pattern missed those)."""
    assert rerun(tree, module) == set(EXECUTED)


def test_a_failed_run_leaves_no_target(tree):
    (tree / "fail.sh").write_text('echo "half a notebook" > "$2"; exit 1\n')
    os.utime(tree / "notebooks/toy_stn.ipynb")  # out of date
    out = make(tree, "figures-toy", "RUN_NOTEBOOK=sh fail.sh")
    assert out.returncode != 0
    assert "Deleting file 'notebooks/executed/toy_stn.ipynb'" in out.stderr
    assert not (tree / "notebooks/executed/toy_stn.ipynb").exists()


def test_figures_runs_every_notebook_and_names_the_failed_ones(tree):
    (tree / "run.sh").write_text(
        'case "$1" in *benchmark*|*real_data*) exit 1;; esac; echo done > "$2"\n'
    )
    os.utime(tree / "stn/method/stn.py")  # everything out of date
    out = make(tree, "figures", "RUN_NOTEBOOK=sh run.sh")
    assert out.returncode != 0
    assert "these notebooks failed: benchmark real_data real_data_cnn" in out.stderr
    assert out.stdout.index("benchmark") < out.stdout.index("toy_stn")  # timed alone, first
    assert (tree / "notebooks/executed/toy_stn.ipynb").read_text() == "done\n"
    assert (tree / "notebooks/executed/robustness.ipynb").read_text() == "done\n"
    assert (tree / "notebooks/executed/your_model.ipynb").read_text() == "done\n"
    assert (tree / "notebooks/executed/benchmark.ipynb").read_text() == "{}"  # as it was


def test_verify_reruns_into_a_scratch_folder_and_leaves_figures_alone(tree):
    out = make(tree, "-n", "verify")
    assert out.returncode == 0, out.stderr
    assert "--publish build/verify/figures" in out.stdout
    assert "--publish figures" not in out.stdout
    # the guide's checkpoints go to the scratch folder too
    assert "-p checkpoint_dir ../build/verify/your_model_checkpoints" in out.stdout
    assert "stn.tooling.verify figures build/verify/figures --scale full" in out.stdout
