"""`make html`: the executed notebooks as self-contained static pages, for offline reading.

``python -m stn.tooling.html OUTPUT_DIR NOTEBOOK ...`` writes ``OUTPUT_DIR/<name>.html`` for every
notebook with nbconvert's HTML exporter. The figures a notebook's markdown shows are files
(``![speed](../../figures/speed.png)``), which nbconvert refuses to embed from outside the
notebook's folder; each one is attached to its cell first (a standard notebook cell attachment),
so the page carries it as a data URL and shows it wherever the page is copied.
"""

from __future__ import annotations

import argparse
import base64
import copy
import mimetypes
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from stn.util.io import write_atomic

if TYPE_CHECKING:
    from nbformat import NotebookNode

#: A markdown image: ``![alt](target)`` or ``![alt](target "title")``.
MARKDOWN_IMAGE = re.compile(r"(!\[[^\]\n]*\]\()([^)\s]+)")


def attach_images(nb: NotebookNode, folder: str | os.PathLike) -> NotebookNode:
    """A copy of ``nb`` in which every markdown image that is a file relative to ``folder`` (the
    notebook's own) is a cell attachment instead. Images that are URLs, attachments already or
    missing files are left as they are (the page then shows them only if the browser finds
    them)."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        attachments = dict(cell.get("attachments", {}))

        def attach(match: re.Match, index: int = index, attachments: dict = attachments) -> str:
            parts = urlsplit(match[2])
            if parts.scheme or parts.netloc or not parts.path:
                return match[0]
            path = Path(folder) / unquote(parts.path)
            mime, _ = mimetypes.guess_type(path.name)
            if mime is None or not mime.startswith("image/") or not path.is_file():
                return match[0]
            name = f"{index}-{len(attachments)}-{path.name}"
            attachments[name] = {mime: base64.b64encode(path.read_bytes()).decode("ascii")}
            return f"{match[1]}attachment:{name}"

        cell.source = MARKDOWN_IMAGE.sub(attach, cell.source)
        if attachments:
            cell.attachments = attachments
    return nb


def render(notebooks: Iterable[str | os.PathLike], output_dir: str | os.PathLike) -> list[Path]:
    """Write one self-contained page per notebook into ``output_dir``; return their paths."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    pages = []
    for notebook in map(Path, notebooks):
        nb = attach_images(nbformat.read(notebook, as_version=4), notebook.parent)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
        page = Path(output_dir) / f"{notebook.stem}.html"
        pages.append(write_atomic(page, lambda tmp, text=body: tmp.write_text(text, "utf-8")))
        print("wrote", page)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stn.tooling.html", description=__doc__.split("\n")[0]
    )
    parser.add_argument("output_dir", help="folder for the pages (created if missing)")
    parser.add_argument("notebooks", nargs="+", help="executed notebooks")
    args = parser.parse_args(argv)
    render(args.notebooks, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
