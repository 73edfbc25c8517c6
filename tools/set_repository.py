"""Copy the book's repository (``_config.yml``) into the set-up cell of every notebook.

The repository URL lives in one place, ``repository: url`` (and ``branch``) in
``_config.yml``: the launch buttons are made from it. A notebook opened on Colab has no
checkout to read that file from, so its first code cell holds the same two values as
``REPOSITORY_URL = "..."`` and ``REPOSITORY_BRANCH = "..."``. This script writes them there,
in every ``book/*.ipynb``; ``tests/test_notebook_setup.py`` fails when they differ.

To point the book at a fork: edit ``repository: url`` (and ``branch``) in ``_config.yml``,
then run ``python tools/set_repository.py``. ``--check`` changes nothing and exits 1 when
a notebook disagrees with ``_config.yml``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = re.compile(r'^(REPOSITORY_URL|REPOSITORY_BRANCH) = "[^"]*"', re.MULTILINE)


def repository(config_path: Path = ROOT / "_config.yml") -> dict:
    """``{"REPOSITORY_URL": ..., "REPOSITORY_BRANCH": ...}`` from ``_config.yml``."""
    section = yaml.safe_load(config_path.read_text(encoding="utf-8"))["repository"]
    return {"REPOSITORY_URL": str(section["url"]), "REPOSITORY_BRANCH": str(section.get("branch", "master"))}


def first_code_cell(notebook: dict) -> dict:
    return next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")


def updated_source(source: str, values: dict) -> str:
    found = set(ASSIGNMENT.findall(source))
    if found != set(values):
        raise ValueError(f"the set-up cell must assign {sorted(values)} (found {sorted(found)})")
    return ASSIGNMENT.sub(lambda m: f'{m[1]} = "{values[m[1]]}"', source)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs")
    args = parser.parse_args(argv)
    values = repository()
    stale = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cell = first_code_cell(notebook)
        source = "".join(cell["source"])
        new = updated_source(source, values)
        if new == source:
            continue
        stale.append(path.relative_to(ROOT).as_posix())
        if not args.check:
            cell["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    verb = "differ from" if args.check else "updated to"
    for name in stale:
        print(f"{name}: {verb} {values['REPOSITORY_URL']} ({values['REPOSITORY_BRANCH']})")
    if not stale:
        print(f"every notebook uses {values['REPOSITORY_URL']} ({values['REPOSITORY_BRANCH']})")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
