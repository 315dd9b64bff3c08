"""Notebook parameters (declared and checked in every notebook), the checked runner, and
reproducible executed notebooks."""

import dataclasses
import math
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import papermill
import pytest

from stn.tooling.notebooks import (
    INJECTED_CELL_ID,
    WIDGET_VIEW,
    check_parameters,
    clean_notebook,
    execute,
    main,
    notebook_parameters,
    rebase_links,
)
from stn.util.settings import Parameter, Settings, check_values, setting

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
NAMES = ("toy_stn", "benchmark", "robustness", "real_data", "your_model", "best_response")
TOY = NOTEBOOKS / "toy_stn.ipynb"


def validation_cell(name: str) -> tuple[int, str]:
    """The index and source of the notebook's parameter-validation cell."""
    cells = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
    (index,) = [i for i, c in enumerate(cells) if ".from_namespace(globals())" in c.source]
    return index, cells[index].source


def run_validation_cell(name: str, **overrides: object) -> None:
    """Execute the validation cell, without a kernel, on the defaults with ``overrides``."""
    namespace = {**notebook_parameters(NOTEBOOKS / f"{name}.ipynb"), **overrides}
    exec(validation_cell(name)[1], namespace)


# --- the checking function ------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameter, value, message",
    [
        (Parameter(int), "100", r"^parameter x='100' has type str; allowed: int$"),
        (Parameter(int), True, r"x=True has type bool; allowed: int$"),
        (Parameter(float), False, r"x=False has type bool; allowed: float$"),
        (Parameter(int), 1.0, r"x=1.0 has type float; allowed: int$"),
        (Parameter(int, ge=1), 0, r"^parameter x=0 is out of range; allowed: >= 1$"),
        (Parameter(float, gt=0), 0, r"x=0 is out of range; allowed: > 0$"),
        (Parameter(float, gt=0), -1e-9, r"x=-1e-09 is out of range; allowed: > 0$"),
        (Parameter(float, ge=0, le=1), 1.5, r"x=1.5 is out of range; allowed: >= 0 and <= 1$"),
        (Parameter(int, lt=10), 10, r"x=10 is out of range; allowed: < 10$"),
        (Parameter(float, gt=0), math.inf, r"x=inf is not a finite number; allowed: > 0$"),
        (Parameter(float), math.nan, r"x=nan is not a finite number; allowed: finite$"),
        (Parameter(float, gt=0), None, r"x=None is None; allowed: float$"),
        (
            Parameter(str, choices=("mlp", "cnn")),
            "rnn",
            r"x='rnn' is not a valid choice; allowed: 'mlp', 'cnn'$",
        ),
        (Parameter(str, choices={"a": 1, "b": 2}), "c", r"allowed: 'a', 'b'$"),
        (
            Parameter(list, items=Parameter(int)),
            (1, 2),
            r"x=\(1, 2\) has type tuple; allowed: list of int$",
        ),
        (
            Parameter(list, items=Parameter(int, ge=0)),
            [0, -1],
            r"^parameter x\[1\]=-1 is out of range; allowed: >= 0$",
        ),
        (
            Parameter(list, items=Parameter(int)),
            [0, "1"],
            r"x\[1\]='1' has type str; allowed: int$",
        ),
        (Parameter(list, min_length=1), [], r"x=\[\] is too short; allowed: at least 1 item$"),
        (
            Parameter(list, unique=True),
            [3, 4, 3],
            r"x=\[3, 4, 3\] repeats an item; allowed: distinct items$",
        ),
        (Parameter((int, str)), 1.5, r"x=1.5 has type float; allowed: int or str$"),
    ],
)
def test_parameter_refuses(parameter, value, message):
    with pytest.raises(ValueError, match=message):
        parameter.check("x", value)


@pytest.mark.parametrize(
    "parameter, value",
    [
        (Parameter(float), 3),  # an int is a valid float
        (Parameter(int, ge=1), 1),  # ge is inclusive
        (Parameter(float, ge=0, le=1), 1.0),
        (Parameter(float, gt=0, none=True), None),
        (Parameter(bool), False),
        (Parameter(str, choices=("mlp", "cnn")), "cnn"),
        (Parameter(list, items=Parameter(int, ge=0), min_length=1, unique=True), [0, 1, 2]),
        (Parameter(object), {"anything": [1]}),
    ],
)
def test_parameter_accepts(parameter, value):
    parameter.check("x", value)


def test_unknown_names_list_the_allowed_ones():
    declared = {"width": Parameter(int), "depth": Parameter(int)}
    with pytest.raises(ValueError, match=r"^unknown parameter widht=8; allowed: depth, width$"):
        check_values({"widht": 8}, declared)
    with pytest.raises(ValueError, match=r"^unknown parameters a=1, b='x'; allowed: depth"):
        check_values({"a": 1, "width": 2, "b": "x"}, declared)


@dataclasses.dataclass(frozen=True)
class Study(Settings):
    seed: int = setting(ge=0)
    lr: float = setting(gt=0)
    target: float | None = setting(gt=0)
    seeds: list[int] = setting([0], min_length=1, items={"ge": 0})
    low: float = setting(0.0)
    high: float = setting(1.0)

    def check_together(self):
        if not self.low < self.high:
            raise ValueError(f"low={self.low!r} must be below high={self.high!r}")


def test_settings_read_their_types_from_the_annotations():
    parameters = Study.parameters()
    assert parameters["seed"] == Parameter(int, ge=0)
    assert parameters["target"] == Parameter(float, gt=0, none=True)
    assert parameters["seeds"] == Parameter(list, items=Parameter(int, ge=0), min_length=1)
    Study(seed=0, lr=1, target=None)
    with pytest.raises(ValueError, match=r"^parameter seed=True has type bool; allowed: int$"):
        Study(seed=True, lr=1, target=None)
    with pytest.raises(ValueError, match=r"^parameter seeds\[1\]=-1 is out of range"):
        Study(seed=0, lr=1, target=None, seeds=[0, -1])
    with pytest.raises(ValueError, match=r"^low=2 must be below high=1.0$"):
        Study(seed=0, lr=1, target=None, low=2)


def test_settings_from_a_namespace_ignore_what_is_not_a_parameter():
    namespace = {
        "seed": 3,
        "lr": 1,
        "target": 0.5,
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "_": None,
        "_i1": "seed = 3",
        "In": ["", "seed = 3"],
        "Out": {},
        "get_ipython": lambda: None,
        "exit": object,  # IPython's ExitAutocall instances are callable
        "quit": object,
        "open": open,
        "os": os,  # a module
        "Study": Study,  # a class
        "check_values": check_values,  # a function
    }
    assert Study.from_namespace(namespace) == Study(seed=3, lr=1, target=0.5)
    with pytest.raises(ValueError, match=r"^unknown parameter widht=8; allowed: high, low, lr,"):
        Study.from_namespace({**namespace, "widht": 8})
    with pytest.raises(ValueError, match=r"^parameter lr=0 is out of range; allowed: > 0$"):
        Study.from_namespace({**namespace, "lr": 0})
    with pytest.raises(ValueError, match="parameter target is required but the parameters cell"):
        Study.from_namespace({k: v for k, v in namespace.items() if k != "target"})


# --- every notebook's validation cell, without a kernel ---------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_notebook_opens_with_its_parameters_and_their_check(name):
    cells = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
    index, source = validation_cell(name)
    assert index == 1 and "parameters" in cells[0].metadata.get("tags", [])
    assert len(source.splitlines()) <= 3  # one short cell, then the narrative
    assert cells[2].cell_type == "markdown" and cells[2].source.startswith("# ")
    run_validation_cell(name)  # every default declared and allowed, nothing undeclared


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        (
            "toy_stn",
            {"variant": "defualt"},
            r"variant='defualt' is not a valid choice; allowed: 'per-layer scale', ",
        ),
        ("toy_stn", {"seed": -1}, r"seed=-1 is out of range; allowed: >= 0$"),
        ("toy_stn", {"batch_size": "100"}, r"batch_size='100' has type str; allowed: int$"),
        ("toy_stn", {"hyper_lr": 0.0}, r"hyper_lr=0.0 is out of range; allowed: > 0$"),
        ("toy_stn", {"target": None, "width": 0}, r"width=0 is out of range; allowed: >= 1$"),
        ("benchmark", {"widths": [4, 0]}, r"widths\[1\]=0 is out of range; allowed: >= 1$"),
        ("benchmark", {"repeats": 2.0}, r"repeats=2.0 has type float; allowed: int$"),
        (
            "robustness",
            {"min_default_rate": 1.5},
            r"min_default_rate=1.5 is out of range; allowed: >= 0 and <= 1$",
        ),
        ("robustness", {"n_seeds": 0}, r"^parameter n_seeds=0 is out of range; allowed: >= 1$"),
        ("robustness", {"target": "none"}, r"target='none' has type str; allowed: float or None$"),
        (
            "best_response",
            {"variants": ["default", "Delta"]},
            r"variants\[1\]='Delta' is not a valid choice; allowed: 'per-layer scale', ",
        ),
        ("best_response", {"fixed_scales": []}, r"fixed_scales=\[\] is too short"),
        ("real_data", {"seeds": [0, 0]}, r"seeds=\[0, 0\] repeats an item"),
        (
            "real_data",
            {"seeds": [2**32]},
            r"seeds\[0\]=4294967296 is out of range; allowed: >= 0 and <= 4294967295$",
        ),
        (
            "real_data",
            {"dataset": "svhn"},
            r"dataset='svhn' is not a valid choice; allowed: 'digits', 'mnist'",
        ),
        (
            "your_model",
            {"initial_weight_decay": 0.0},
            r"initial_weight_decay=0.0 is out of range; allowed: > 0.0 and < 0.01$",
        ),
        ("your_model", {"cycles": 30}, r"cycles=30 is not allowed; it must be a multiple of 2 \* "),
        (
            "real_data",
            {"stn_cycles": 3000, "trial_steps": 100},
            r"^STN's 9099 steps exceed a fifth of each search's 800",
        ),
        (
            "best_response",
            {"lambda_init": 20.0},
            r"^lambda_init=20.0 is not allowed; it must lie strictly between lower=0.0001 ",
        ),
        ("best_response", {"toy_low": 7.0}, r"^toy_low=7.0 is not allowed; it must be below"),
    ],
)
def test_validation_cell_refuses(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_validation_cell(name, **overrides)


# --- plain papermill stops at the validation cell ---------------------------------------------

#: (notebook, parameters, the ValueError's message); each run stops at the validation cell. An
#: unknown name in every notebook, a wrong type and an invalid choice: each run costs a kernel
#: and TensorFlow's import (~10 s), the other refusals are tested above without a kernel.
PAPERMILL_CASES = {
    "toy_stn: misspelt": (
        "toy_stn",
        {"widht": 8},
        r"^unknown parameter widht=8; allowed: backend, batch_size, checkpoint_dir, depth, ",
    ),
    "benchmark: misspelt": (
        "benchmark",
        {"repeat": 3},
        r"^unknown parameter repeat=3; allowed: batch_sizes, ",
    ),
    "robustness: misspelt": (
        "robustness",
        {"n_seed": 30},
        r"^unknown parameter n_seed=30; allowed: backend, checkpoint_dir, first_seed, ",
    ),
    "real_data: misspelt": (
        "real_data",
        {"seed": [0]},
        r"^unknown parameter seed=\[0\]; allowed: backend, checkpoint_dir, dataset, ",
    ),
    "real_data: type": (
        "real_data",
        {"seeds": 0},
        r"^parameter seeds=0 has type int; allowed: list of int$",
    ),
    "toy_stn: choice": (
        "toy_stn",
        {"variant": "Delta"},
        r"^parameter variant='Delta' is not a valid choice; allowed: 'per-layer scale', ",
    ),
}


@pytest.fixture(scope="module")
def papermill_errors(tmp_path_factory):
    """Run every case with plain papermill, two kernels at a time; each run's exception."""
    out = tmp_path_factory.mktemp("papermill")
    spawn = multiprocessing.get_context("spawn")  # forking a process that loaded TF can hang
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        futures = {
            case: pool.submit(
                papermill.execute_notebook,
                str(NOTEBOOKS / f"{name}.ipynb"),
                str(out / f"{i}.ipynb"),
                parameters=parameters,
                cwd=str(NOTEBOOKS),
                kernel_name="python3",
                progress_bar=False,
            )
            for i, (case, (name, parameters, _)) in enumerate(PAPERMILL_CASES.items())
        }
        return {case: future.exception() for case, future in futures.items()}


@pytest.mark.parametrize("case", PAPERMILL_CASES)
def test_plain_papermill_stops_at_the_validation_cell(case, papermill_errors):
    name, _, message = PAPERMILL_CASES[case]
    error = papermill_errors[case]
    assert isinstance(error, papermill.PapermillExecutionError), error
    assert error.ename == "ValueError"
    assert re.search(message, error.evalue), error.evalue
    assert error.source == validation_cell(name)[1]


# --- the checked runner -----------------------------------------------------------------------


def test_notebook_parameters_are_read_from_the_tagged_cell():
    params = notebook_parameters(TOY)
    assert params["batch_size"] == 100 and params["validation_range"] == 2.0


@pytest.mark.parametrize(
    "params, message",
    [
        ({"batch_sise": 10}, r"unknown parameter batch_sise=10; allowed: .*batch_size"),
        ({"batch_size": "100"}, r"batch_size='100' has type str; allowed: int"),
        ({"batch_size": True}, r"batch_size=True has type bool; allowed: int"),
        ({"hyper_lr": "fast"}, r"hyper_lr='fast' has type str; allowed: float"),
    ],
)
def test_bad_notebook_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        check_parameters(TOY, params)
    check_parameters(TOY, {"hyper_lr": 1, "seed": 3, "target": None})  # an int is a valid float


def test_runner_refuses_bad_parameters_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.ipynb"
    assert main([str(TOY), str(out), "-p", "widht", "8"]) == 2
    assert "unknown parameter widht=8" in capsys.readouterr().err
    assert not out.exists()


# --- reproducible executed notebooks ----------------------------------------------------------


def executed_notebook():
    """A small notebook as papermill and nbclient leave it, with every field that varies."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {
                "codemirror_mode": {"name": "ipython", "version": 3},
                "name": "python",
                "version": "3.11.7",
            },
            "papermill": {
                "default_parameters": {"n": 3},
                "duration": 1.39,
                "end_time": "2026-11-28T10:28:05",
                "environment_variables": {},
                "exception": None,
                "input_path": "in.ipynb",
                "output_path": "out.ipynb",
                "parameters": {"n": 4, "version": "v1"},
                "start_time": "2026-11-28T10:28:04",
                "version": "2.7.0",
            },
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"1336acdd": {}}}},
        }
    )
    timing = {
        "execution": {"iopub.execute_input": "2026-11-28T10:28:04.666395Z"},
        "papermill": {
            "duration": 0.009,
            "end_time": "2026-11-28T10:28:04",
            "exception": False,
            "start_time": "2026-11-28T10:28:04",
            "status": "completed",
        },
    }
    parameters = v4.new_code_cell("n = 3", metadata={"tags": ["parameters"], **timing})
    injected = v4.new_code_cell("# Parameters\nn = 4\n", metadata={"tags": ["injected-parameters"]})
    bar = v4.new_output(
        "display_data",
        data={WIDGET_VIEW: {"model_id": "1336acdd", "version_major": 2}, "text/plain": "0%|"},
    )
    figure = v4.new_output(
        "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480>"}
    )
    outputs = [
        v4.new_output("stream", name="stdout", text="a\n"),
        bar,
        v4.new_output("stream", name="stdout", text="b\n"),
        v4.new_output("stream", name="stdout", text="c\n"),
        v4.new_output("stream", name="stderr", text="warning\n"),
        figure,
        v4.new_output("stream", name="stdout", text="d\n"),
    ]
    work = v4.new_code_cell("work()", metadata=timing, outputs=outputs, execution_count=3)
    nb.cells = [v4.new_markdown_cell("# Title"), parameters, injected, work]
    return nb


def test_clean_notebook_removes_what_changes_between_runs():
    nb = executed_notebook()
    original = nbformat.writes(nb)
    clean = clean_notebook(nb)
    assert nbformat.writes(nb) == original  # the input is left alone
    nbformat.validate(clean)
    assert clean.metadata.papermill == {
        "default_parameters": {"n": 3},
        "parameters": {"n": 4, "version": "v1"},
    }
    assert "widgets" not in clean.metadata
    assert clean.metadata.language_info == {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "name": "python",
    }
    assert clean.metadata.kernelspec == nb.metadata.kernelspec
    assert [c.id for c in clean.cells] == [c.id for c in nb.cells[:2]] + [
        INJECTED_CELL_ID,
        nb.cells[3].id,
    ]
    for cell in clean.cells:
        assert "execution" not in cell.metadata and "papermill" not in cell.metadata
    assert clean.cells[1].metadata.tags == ["parameters"]
    work = clean.cells[3]
    assert work.execution_count == 3
    assert [(o.output_type, o.get("name"), o.get("text")) for o in work.outputs] == [
        ("stream", "stdout", "a\nb\nc\n"),  # the bar between a and b is gone: a, b, c join
        ("stream", "stderr", "warning\n"),
        ("display_data", None, None),
        ("stream", "stdout", "d\n"),
    ]
    assert work.outputs[2] == nb.cells[3].outputs[5]  # the figure, untouched
    assert nbformat.writes(clean_notebook(clean)) == nbformat.writes(clean)


def test_rebase_links_points_relative_targets_at_the_same_files_from_the_output_folder():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            '![x](../figures/x.png) and ![y](y.gif "title"), [code](../stn/io.py#L3)\n'
            "[web](https://example.org/a.png) [top](#top) ![a](attachment:a.png) ![r](/abs.png)"
        ),
        nbformat.v4.new_code_cell("print('![x](../figures/x.png)')"),
    ]
    moved = rebase_links(nb, "notebooks", "notebooks/executed")
    assert moved.cells[0].source == (
        '![x](../../figures/x.png) and ![y](../y.gif "title"), [code](../../stn/io.py#L3)\n'
        "[web](https://example.org/a.png) [top](#top) ![a](attachment:a.png) ![r](/abs.png)"
    )
    assert moved.cells[1] == nb.cells[1]  # code is left alone
    assert nb.cells[0].source.startswith("![x](../figures/x.png)")  # a copy
    assert rebase_links(nb, "notebooks", "notebooks") == nb
    back = rebase_links(moved, "notebooks/executed", "notebooks")
    assert back.cells[0].source == nb.cells[0].source


TINY = {
    "parameters": "n = 3",
    "print": "import os\n\nprint('value', n * 2, 'TQDM_DISABLE =', os.environ.get('TQDM_DISABLE'))",
    "figure": (
        "import matplotlib.pyplot as plt\n\n"
        "fig, ax = plt.subplots()\nax.plot(range(n), 'o-')\nax.set_title(f'n = {n}')\nplt.show()"
    ),
    "tqdm": (
        "import time\n\nimport tqdm\nfrom tqdm.auto import tqdm as auto_tqdm\n\n"
        "for i in auto_tqdm(range(n)):\n    time.sleep(0.01)\n"
        "for i in tqdm.tqdm(range(n)):\n    time.sleep(0.01)\n"
        "print('done')"
    ),
}


def test_executed_notebooks_are_byte_for_byte_reproducible(tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in TINY.values()]
    nb.cells[0].metadata.tags = ["parameters"]
    nb.cells.append(nbformat.v4.new_markdown_cell("![figure](figures/f.png)"))
    notebook = tmp_path / "tiny.ipynb"
    nbformat.write(nb, notebook)

    first = execute(notebook, tmp_path / "executed/first.ipynb", {"n": 4})
    second = execute(notebook, tmp_path / "executed/second.ipynb", {"n": 4})
    assert "TQDM_DISABLE" not in os.environ  # set for the kernel only
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    for key in ("start_time", "end_time", "duration", "iopub", "widget", "model_id", "output_path"):
        assert key not in text
    assert "it/s" not in text and "%|" not in text  # no tqdm bar, in a widget or on stderr
    cells = nbformat.read(first, as_version=4).cells
    assert cells[1].id == INJECTED_CELL_ID and "n = 4" in cells[1].source
    assert cells[2].outputs[0].text == "value 8 TQDM_DISABLE = 1\n"
    (figure,) = cells[3].outputs
    assert "image/png" in figure.data
    assert [o.get("text") for o in cells[4].outputs] == ["done\n"]
    assert cells[5].source == "![figure](../figures/f.png)"  # the same file, from executed/
