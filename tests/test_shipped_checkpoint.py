"""The shipped checkpoint scores what data/checkpoints/README.md records (within 0.01)."""
import json
import pathlib
import re

import pytest

from redo_lib.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "synthetic.pt"
README = ROOT / "data" / "checkpoints" / "README.md"


def recorded():
    match = re.search(r"<!-- recorded: (\{.*?\}) -->", README.read_text())
    assert match, f"{README} has no '<!-- recorded: {{...}} -->' line with the measured scores"
    return json.loads(match.group(1))


def test_the_shipped_checkpoint_exists_and_is_small():
    assert CHECKPOINT.is_file(), f"missing {CHECKPOINT}"
    assert CHECKPOINT.stat().st_size < 25 * 2**20


def test_shipped_checkpoint_scores_what_its_readme_records(capsys):
    expected = recorded()
    code = main(["evaluate", "--checkpoint", str(CHECKPOINT), "--split", "test", "--device", "cpu", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_images"] == expected["n_images"]
    for key in ("iou", "accuracy", "iou_dataset", "accuracy_dataset"):
        assert result[key] == pytest.approx(expected[key], abs=0.01), key
