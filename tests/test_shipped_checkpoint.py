"""Every shipped checkpoint scores what data/checkpoints/README.md records (within 0.01)."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

from redo_lib.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "data" / "checkpoints"
README = CHECKPOINTS / "README.md"


def recorded():
    """``{name: scores}`` from the README's ``<!-- recorded NAME: {...} -->`` lines."""
    found = dict(re.findall(r"<!-- recorded ([\w.-]+): (\{.*?\}) -->", README.read_text()))
    assert found, f"{README} has no '<!-- recorded NAME: {{...}} -->' line with measured scores"
    return {name: json.loads(scores) for name, scores in found.items()}


def test_every_shipped_checkpoint_is_recorded_and_small():
    shipped = {p.stem for p in CHECKPOINTS.glob("*.pt")}
    assert shipped, f"no checkpoint in {CHECKPOINTS}"
    assert shipped == set(recorded()), "each data/checkpoints/*.pt needs its recorded scores in README.md"
    for name in shipped:
        assert (CHECKPOINTS / f"{name}.pt").stat().st_size < 25 * 2**20, name
        assert (CHECKPOINTS / f"{name}_metrics.jsonl").is_file(), f"{name}: its training log is missing"


def folder_set_test_split(kind, n_images, out):
    """The test split of a held-out folder set, drawn again by ``benchmarks/folder_sets.py``
    (each image has its own generator, so the test split alone is the same images)."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "folder_sets.py"), "--kind", kind, "--out", str(out),
                    "--train", "0", "--val", "0", "--test", str(n_images), "--quiet"], check=True)
    return out


@pytest.mark.parametrize("name", sorted(recorded()))
def test_shipped_checkpoint_scores_what_its_readme_records(name, capsys, tmp_path):
    """A record with ``"folder_set": KIND`` was trained on that set of ``folder_sets.py``."""
    expected = recorded()[name]
    data = []
    if "folder_set" in expected:
        root = folder_set_test_split(expected["folder_set"], expected["n_images"], tmp_path / "set")
        data = ["--data-root", str(root)]
    code = main(["evaluate", "--checkpoint", str(CHECKPOINTS / f"{name}.pt"), "--split", "test", "--device", "cpu",
                 "--json", *data])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_images"] == expected["n_images"]
    for key in ("iou", "accuracy", "iou_dataset", "accuracy_dataset"):
        assert result[key] == pytest.approx(expected[key], abs=0.01), key
