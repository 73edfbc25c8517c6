"""Every code cell the book shows fits the rendered page: no line longer than 79 characters.

The code of the book is written for a page 79 characters wide (PEP 8's limit): a longer
line does not fit the code box of the rendered page, which then scrolls sideways and hides
the end of the line (often the end of a printed sentence or the last argument of a call).
The check covers the notebooks that are built, the ``file:`` entries of ``_toc.yml`` (paths
without a suffix; Markdown pages have no code cells and are skipped), and every code cell
whose tags do not hide its source (``hide-input``, ``remove-input``, ``remove-cell``): a
hidden cell is not on the page until the reader opens it, and the set-up cell
(``tests/test_notebook_setup.py``) is one of those. Markdown cells wrap by themselves.

A failure names the notebook, the cell's index (and id) and the line, so that the line can
be broken by hand: inside brackets, after commas, with comments and long strings split
over several lines.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 79
HIDDEN_SOURCE = {"hide-input", "remove-input", "remove-cell"}


def toc_files(entry) -> list:
    """The ``file:`` values of a table of contents, in the order they appear."""
    if isinstance(entry, dict):
        found = [entry["file"]] if "file" in entry else []
        if "root" in entry:
            found.append(entry["root"])
        return found + [f for key, value in entry.items() if key not in ("file", "root")
                        for f in toc_files(value)]
    if isinstance(entry, list):
        return [f for item in entry for f in toc_files(item)]
    return []


def built_notebooks() -> list:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    notebooks = []
    for name in toc_files(toc):
        path = ROOT / name
        if path.suffix not in (".ipynb", ".md"):
            path = path.with_name(path.name + ".ipynb")
        if path.suffix == ".ipynb" and path.is_file():
            notebooks.append(path)
        else:
            markdown = path.with_suffix(".md")
            assert markdown.is_file(), f"_toc.yml lists {name}, which is neither .ipynb nor .md"
    return notebooks


NOTEBOOKS = built_notebooks()


def long_lines(path: Path) -> list:
    """``(cell index, cell id, line number, line)`` of every over-long line in a shown cell."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for index, cell in enumerate(notebook["cells"]):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & HIDDEN_SOURCE:
            continue
        for number, line in enumerate("".join(cell["source"]).split("\n"), start=1):
            if len(line) > LIMIT:
                found.append((index, cell.get("id", "?"), number, line))
    return found


def test_the_toc_lists_the_notebooks():
    assert len(NOTEBOOKS) >= 10
    assert all(path.is_relative_to(ROOT / "book") for path in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_shown_code_lines_fit_the_page(path):
    found = long_lines(path)
    assert not found, f"{path.relative_to(ROOT)}: code lines over {LIMIT} characters:\n" + "\n".join(
        f"  cell {index} (id {cell_id}), line {number} ({len(line)} characters): {line}"
        for index, cell_id, number, line in found)


def test_the_check_sees_a_long_line(tmp_path):
    """The helper finds a long line in a shown cell, and ignores hidden and Markdown cells."""
    long = "x = " + "1 + " * 30 + "1"
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": [long]},
        {"cell_type": "code", "id": "hidden", "metadata": {"tags": ["hide-input"]},
         "source": [long]},
        {"cell_type": "code", "id": "shown", "metadata": {}, "source": ["y = 1\n", long]},
    ]
    path = tmp_path / "example.ipynb"
    path.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    assert long_lines(path) == [(2, "shown", 2, long)]
