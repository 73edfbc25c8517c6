"""Every notebook of the book starts with the same set-up cell, cloning the repository of
``_config.yml`` on Colab: the repository URL is kept in one place.

``_config.yml``'s ``repository: url`` and ``branch`` make the launch buttons; the set-up cell
holds the same two values (``tools/set_repository.py`` copies them there, which is what a
fork runs after editing ``_config.yml``).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
URL = re.compile(r"https?://[^\s\"')]+")


def first_code_source(path: Path) -> str:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return "".join(next(c for c in notebook["cells"] if c["cell_type"] == "code")["source"])


def assigned(source: str, name: str) -> str:
    values = re.findall(rf'^{name} = "([^"]*)"$', source, re.MULTILINE)
    assert len(values) == 1, f"the set-up cell must assign {name} exactly once"
    return values[0]


@pytest.fixture(scope="module")
def repository() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]


def test_the_book_has_notebooks():
    assert len(NOTEBOOKS) >= 10


def test_every_notebook_has_the_same_first_code_cell():
    sources = {path.name: first_code_source(path) for path in NOTEBOOKS}
    reference = sources[NOTEBOOKS[0].name]
    different = [name for name, source in sources.items() if source != reference]
    assert not different, f"set-up cell differs from {NOTEBOOKS[0].name} in {different}"


def test_the_set_up_cell_clones_the_repository_of_the_config(repository):
    source = first_code_source(NOTEBOOKS[0])
    assert assigned(source, "REPOSITORY_URL") == repository["url"]
    assert assigned(source, "REPOSITORY_BRANCH") == repository["branch"]
    # The only URL in the cell is that assignment, and the clone uses the variables.
    assert URL.findall(source) == [repository["url"]]
    assert re.search(r'"clone".*REPOSITORY_BRANCH, REPOSITORY_URL', source)


def test_the_set_up_cell_does_nothing_outside_colab_but_set_up(tmp_path, monkeypatch):
    """Run as plain Python in a checkout: no clone, no install, no change of folder."""
    source = first_code_source(NOTEBOOKS[0])
    code = "\n".join(line for line in source.splitlines() if not line.startswith("%"))
    calls = []
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    namespace: dict = {}
    exec(compile(code, "set-up cell", "exec"), namespace)
    assert calls == [] and Path.cwd() == tmp_path
    assert {"FULL", "DEVICE", "SEED", "REPOSITORY_URL"} <= namespace.keys()


def test_set_repository_tool_agrees(repository):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import set_repository
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert set_repository.repository() == {"REPOSITORY_URL": repository["url"],
                                           "REPOSITORY_BRANCH": repository["branch"]}
    assert set_repository.main(["--check"]) == 0
    # A fork: the tool rewrites exactly the two assignments.
    source = first_code_source(NOTEBOOKS[0])
    fork = {"REPOSITORY_URL": "https://github.com/someone/fork", "REPOSITORY_BRANCH": "dev"}
    changed = set_repository.updated_source(source, fork)
    assert assigned(changed, "REPOSITORY_URL") == fork["REPOSITORY_URL"]
    assert assigned(changed, "REPOSITORY_BRANCH") == "dev"
    assert len(changed.splitlines()) == len(source.splitlines())


def test_a_clone_that_fails_stops_with_one_message(tmp_path, monkeypatch):
    """On Colab with an unpublished or private URL: no password prompt (GIT_TERMINAL_PROMPT=0)
    and one line naming the URL, git's reason and what to edit, instead of a traceback."""
    import subprocess
    import types

    source = first_code_source(NOTEBOOKS[0])
    code = "\n".join(line for line in source.splitlines() if not line.startswith("%"))
    calls = []

    def failing_run(args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, 128, "", "Cloning...\nfatal: repository 'x' not found\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        exec(compile(code, "set-up cell", "exec"), {})
    message = str(stopped.value)
    assert "cannot clone" in message and "fatal: repository 'x' not found" in message
    assert "_config.yml" in message and "\n" not in message
    (args, kwargs), = calls  # the clone only: nothing installed after a failed clone
    assert args[:2] == ["git", "clone"] and kwargs["env"]["GIT_TERMINAL_PROMPT"] == "0"
