"""Run a parameterized notebook with papermill, refusing unknown or mistyped parameters.

``python -m stn.notebooks NOTEBOOK OUTPUT -p name value ...`` checks every name against the
notebook's ``parameters`` cell and every value against the default's type, then executes into a
temporary file and renames it onto OUTPUT, so a failed run leaves no half-written notebook.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

import papermill

from stn.io import atomic_path


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, object]:
    """The defaults of the notebook's ``parameters`` cell, by name."""
    return {
        name: ast.literal_eval(info["default"])
        for name, info in papermill.inspect_notebook(str(notebook)).items()
    }


def check_parameters(notebook: str | os.PathLike, parameters: dict[str, object]) -> None:
    """Raise ValueError for a name the notebook does not declare or a value of the wrong type."""
    defaults = notebook_parameters(notebook)
    for name, value in parameters.items():
        if name not in defaults:
            raise ValueError(
                f"{notebook}: unknown parameter {name}={value!r}; "
                f"allowed: {', '.join(sorted(defaults))}"
            )
        default = defaults[name]
        if default is None or value is None:
            continue
        expected = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise ValueError(
                f"{notebook}: parameter {name}={value!r} has type {type(value).__name__}; "
                f"allowed: {type(default).__name__} (default {default!r})"
            )


def execute(
    notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict[str, object]
) -> Path:
    """Check the parameters, run the notebook in its own folder, and write ``output`` whole."""
    check_parameters(notebook, parameters)
    with atomic_path(output) as tmp:
        papermill.execute_notebook(
            str(notebook),
            str(tmp),
            parameters=parameters,
            cwd=str(Path(notebook).parent),
            progress_bar=False,
        )
    return Path(output)


def _parse_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    args = parser.parse_args(argv)
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    try:
        execute(args.notebook, args.output, parameters)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
