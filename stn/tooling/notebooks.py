"""Parameterized notebooks and a reproducible runner.

Every notebook checks its parameters in the cell right after its ``parameters`` cell (where
papermill also injects the values it is given), by building its study's settings dataclass
(:mod:`stn.util.settings`), so a misspelt, mistyped or out-of-range value stops the run there,
however the notebook is run::

    settings = toy.ToySettings.from_namespace(globals())

``python -m stn.tooling.notebooks NOTEBOOK OUTPUT -p name value ...`` also checks every name
against the notebook's ``parameters`` cell and every value against the default's type before it
starts a kernel, executes with papermill into a temporary file, removes what changes from one run
to the next (:func:`clean_notebook`), rewrites its markdown cells' relative links for OUTPUT's
folder (:func:`rebase_links`: an executed copy in ``notebooks/executed/`` still shows the figures
its source shows) and renames the result onto OUTPUT: a failed run leaves no half-written notebook,
and two runs with the same parameters write the same bytes unless the notebook's own outputs
differ (a measured time, say).

Importing this module imports the ``stn`` package, and with it TensorFlow; papermill and nbformat
are imported only by the functions that use them. As an entry point, the runner starts kernels
with the project's XLA flags (:mod:`stn.util.xla`).
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from stn.util import xla
from stn.util.environment import record
from stn.util.io import atomic_path, exit_on_sigterm
from stn.util.settings import Parameter, check_values

if TYPE_CHECKING:
    from nbformat import NotebookNode


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, object]:
    """The defaults of the notebook's ``parameters`` cell, by name."""
    import papermill

    return {
        name: ast.literal_eval(info["default"])
        for name, info in papermill.inspect_notebook(str(notebook)).items()
    }


def check_parameters(notebook: str | os.PathLike, parameters: Mapping[str, object]) -> None:
    """Raise ValueError for a name the notebook's ``parameters`` cell does not define or a value
    whose type differs from the default's (None passes: the notebook's own check decides)."""
    declared = {name: Parameter.like(d) for name, d in notebook_parameters(notebook).items()}
    try:
        check_values(parameters, declared)
    except ValueError as error:
        raise ValueError(f"{notebook}: {error}") from None


#: Where ``execute`` stages a notebook's outputs until every cell has passed.
DEFAULT_STAGING = Path("build/staging")

#: Set in the kernel's environment: stn's progress bars (``stn.training.progress``) stay off,
#: since they would print elapsed times into the executed notebook (clean_notebook drops any
#: widget bar), and XLA compiles with the project's flags (:mod:`stn.util.xla`).
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "XLA_FLAGS": xla.flags(os.environ.get("XLA_FLAGS", ""))}


def execute(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, object],
    publish: str | os.PathLike | None = None,
    staging: str | os.PathLike = DEFAULT_STAGING,
) -> Path:
    """Check the parameters, run the notebook in its own folder (papermill's progress bar, one
    step per cell, on the terminal), and write the cleaned ``output`` whole, stamped with the
    environment that ran it (metadata ``stn.environment``).

    With ``publish``, the notebook's ``output_dir`` is a staging folder
    (``staging/<output's stem>``), and its files move into ``publish`` only after every cell
    passed: a failed notebook leaves the published figures as they were."""
    import nbformat

    check_parameters(notebook, parameters)
    stage = None
    if publish is not None:
        stage, parameters = staged(notebook, output, parameters, staging)
    try:
        with atomic_path(output) as tmp:
            executed = run_papermill(notebook, tmp, parameters)
            executed = rebase_links(executed, Path(notebook).parent, Path(output).parent)
            executed.metadata["stn"] = {"environment": record()}
            nbformat.write(executed, str(tmp))
            if stage is not None:
                move_tree(stage, Path(publish))
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return Path(output)


def run_papermill(
    notebook: str | os.PathLike, path: Path, parameters: Mapping[str, object]
) -> NotebookNode:
    """Papermill's run of ``notebook`` into ``path``, in its own folder and the kernel
    environment, cleaned of what changes from run to run (:func:`clean_notebook`)."""
    import papermill
    import tqdm.auto  # noqa: F401  # before TQDM_DISABLE is set: papermill's own bar stays on

    with _environment(KERNEL_ENVIRONMENT):  # the kernel inherits it
        executed = papermill.execute_notebook(
            str(notebook),
            str(path),
            parameters=dict(parameters),
            cwd=str(Path(notebook).parent),
            progress_bar=True,
        )
    return clean_notebook(executed)


def staged(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, object],
    staging: str | os.PathLike,
) -> tuple[Path, dict[str, object]]:
    """A fresh, empty staging folder for one notebook's outputs, and the parameters that point
    its ``output_dir`` there (relative to the notebook, which runs in its own folder)."""
    if "output_dir" in parameters:
        raise ValueError("give output_dir or publish, not both: publish sets output_dir")
    stage = Path(staging) / Path(output).stem
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    relative = os.path.relpath(stage, Path(notebook).parent)
    return stage, {**parameters, "output_dir": relative}


def move_tree(source: Path, destination: Path) -> list[Path]:
    """Move every file under ``source`` to the same relative path under ``destination``, each by
    an atomic rename (replacing what is there); return the destination paths."""
    moved = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved.append(target)
    return moved


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables inside the block (and for the processes it starts)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: The output of an ipywidgets display (tqdm.notebook's bars); its model id is random.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: The papermill notebook metadata that describes the run's inputs, not its circumstances.
KEPT_PAPERMILL_METADATA = ("parameters", "default_parameters")
#: The id clean_notebook gives papermill's injected-parameters cell (papermill's is random).
INJECTED_CELL_ID = "injected-parameters"


def clean_notebook(nb: NotebookNode) -> NotebookNode:
    """A copy of an executed notebook without what changes between two runs with the same
    parameters: papermill's timings, paths, version and environment variables (its parameters
    stay), version strings in the metadata, the ipywidgets state (random model ids), each cell's
    nbclient timestamps and papermill timings, widget displays (tqdm's notebook bars), the
    random id of papermill's injected-parameters cell, and where a cell's run of consecutive
    stream outputs is split (the kernel flushes stdout on a timer): those are joined."""
    nb = copy.deepcopy(nb)
    papermill_metadata = nb.metadata.get("papermill", {})
    for key in set(papermill_metadata) - set(KEPT_PAPERMILL_METADATA):
        del papermill_metadata[key]
    nb.metadata.pop("widgets", None)
    for key, value in nb.metadata.items():
        if key != "papermill":
            _drop_version_strings(value)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if "id" in cell and "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = INJECTED_CELL_ID
        if cell.cell_type == "code":
            outputs = [out for out in cell.outputs if WIDGET_VIEW not in out.get("data", {})]
            cell.outputs = _join_streams(outputs)
    return nb


#: A markdown link or image: ``[text](target)`` or ``![alt](target "title")``.
_MARKDOWN_LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)")


def rebase_links(
    nb: NotebookNode, source: str | os.PathLike, destination: str | os.PathLike
) -> NotebookNode:
    """A copy of ``nb`` whose markdown cells' relative link and image targets, written for the
    folder ``source`` (the notebook's own), point to the same files from the folder
    ``destination`` (its executed copy's): ``../figures/x.png`` in ``notebooks/`` becomes
    ``../../figures/x.png`` in ``notebooks/executed/``. URLs, absolute paths, anchors and
    attachments are left as they are."""
    nb = copy.deepcopy(nb)
    start = os.path.abspath(destination)
    base = os.path.abspath(source)

    def rebase(match: re.Match) -> str:
        parts = urlsplit(match[2])
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            return match[0]
        target = Path(os.path.relpath(os.path.join(base, parts.path), start)).as_posix()
        return match[1] + urlunsplit(parts._replace(path=target))

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _MARKDOWN_LINK.sub(rebase, cell.source)
    return nb


def _drop_version_strings(node: object) -> None:
    if isinstance(node, dict):
        for key in list(node):
            if key == "version" and isinstance(node[key], str):
                del node[key]
            else:
                _drop_version_strings(node[key])
    elif isinstance(node, list):
        for item in node:
            _drop_version_strings(item)


def _join_streams(outputs: list) -> list:
    joined = []
    for out in outputs:
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and out.output_type == previous.output_type == "stream"
            and out.name == previous.name
        ):
            previous.text += out.text
        else:
            joined.append(out)
    return joined


def _parse_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a parameterized notebook with papermill, refusing unknown or mistyped "
        "parameters, and write the output notebook whole and reproducibly."
    )
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    parser.add_argument(
        "--publish",
        metavar="DIR",
        help="stage the notebook's output_dir and move its files into DIR once every cell passed",
    )
    parser.add_argument("--staging", metavar="DIR", default=str(DEFAULT_STAGING))
    args = parser.parse_args(argv)
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    exit_on_sigterm()
    try:
        execute(args.notebook, args.output, parameters, args.publish, args.staging)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
