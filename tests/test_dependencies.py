"""Core dependencies are TensorFlow and numpy: the method, the training loop, the tasks and the
utilities import, and a toy STN runs, with every package of the extras missing."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: The import names of the extras' packages (TensorFlow's own dependencies stay importable).
BLOCKED = (
    "sklearn",
    "scipy",
    "pandas",
    "optuna",
    "tqdm",
    "matplotlib",
    "PIL",
    "papermill",
    "nbformat",
    "nbconvert",
    "ipykernel",
    "ipywidgets",
    "jupyterlab",
    "tensorboard",
    "ray",
    "jax",
)

#: Run in a fresh interpreter: a meta-path finder refuses the blocked packages before any import.
CORE_ONLY = textwrap.dedent(
    """
    import importlib, importlib.abc, json, pkgutil, sys

    BLOCKED = frozenset({blocked!r})
    refused = set()

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                refused.add(name)
                raise ModuleNotFoundError(f"{{name}} is blocked: not a core dependency", name=name)
            return None

    assert not BLOCKED & {{m.partition(".")[0] for m in sys.modules}}, "imported before the hook"
    sys.meta_path.insert(0, Refuse())

    import stn, stn.method.stn, stn.training.loop, stn.tasks.toy, stn.tasks.classification
    import stn.util.io

    modules = []
    for sub in ("method", "training", "tasks", "util"):
        package = importlib.import_module(f"stn.{{sub}}")
        for info in pkgutil.walk_packages(package.__path__, f"stn.{{sub}}."):
            importlib.import_module(info.name)
            modules.append(info.name)

    config = stn.STNConfig(
        max_cycles=5, chunk_cycles=5, snapshot_every=5, target=None, jit_compile=False
    )
    run = stn.Trainer(stn.STN(stn.ToyTask(), [stn.x_range_spec()], stn.ToyHyperNet, config)).run()
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    print(json.dumps({{
        "modules": modules, "refused": sorted(refused), "loaded": loaded,
        "values": run.values.tolist(),
    }}))
    """
)


def test_the_core_imports_and_runs_with_only_tensorflow_and_numpy():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [sys.executable, "-c", CORE_ONLY.format(blocked=BLOCKED)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    for sub in ("method", "training", "tasks", "util"):
        assert any(m.startswith(f"stn.{sub}.") for m in report["modules"]), sub
    assert len(report["values"]) == 5  # one row per cycle


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0).lower()


def test_core_dependencies_are_tensorflow_and_numpy():
    names = [requirement_name(r) for r in PYPROJECT["project"]["dependencies"]]
    assert sorted(names) == ["numpy", "tensorflow-cpu"]


def test_the_lock_and_the_environment_include_every_extra():
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^EXTRAS := (.*)$", makefile, re.MULTILINE).group(1).split(",")
    assert set(listed) == extras


def test_every_package_the_library_imports_is_declared():
    declared = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared |= {requirement_name(r) for r in extra}
    imported = {"sklearn": "scikit-learn", "PIL": "pillow"}
    for name in (
        "scipy",
        "optuna",
        "tqdm",
        "matplotlib",
        "papermill",
        "nbformat",
        "nbconvert",
        "jax",
    ):
        imported[name] = name
    sources = "\n".join(p.read_text() for p in (ROOT / "stn").rglob("*.py"))
    for module, distribution in imported.items():
        if re.search(rf"^\s*(import|from) {module}\b", sources, re.MULTILINE):
            assert distribution in declared, f"stn imports {module}; declare {distribution}"
