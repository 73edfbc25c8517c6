"""benchmarks/ladder.py: the table reads the runs' curves the way the book states them."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ladder():
    spec = importlib.util.spec_from_file_location("ladder", ROOT / "benchmarks" / "ladder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, curve, test_iou=None):
    folder.mkdir(parents=True)
    lines = [json.dumps({"event": "start", "step": 0})]
    for i, (seconds, iou) in enumerate(curve, 1):
        lines.append(json.dumps({"step": 250 * i, "iteration": 250 * i, "seconds": seconds, "iou": iou}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if test_iou is not None:
        (folder / "test.json").write_text(json.dumps({"iou": test_iou}))


def test_best_by_minutes_is_the_best_so_far_and_none_past_the_end():
    ladder = _ladder()
    records = [{"seconds": 300, "iou": 0.5}, {"seconds": 590, "iou": 0.7}, {"seconds": 900, "iou": 0.6},
               {"seconds": 1800, "iou": 0.65}]
    assert ladder.best_by(records, 10) == 0.7
    assert ladder.best_by(records, 30) == 0.7
    assert ladder.best_by(records, 60) is None  # the run stopped at 30 minutes


def test_table_lists_runs_and_baselines(tmp_path, capsys):
    ladder = _ladder()
    _write_run(tmp_path / "synthetic-flat" / "nz3" / "seed0", [(600, 0.4), (1800, 0.91)], test_iou=0.905)
    (tmp_path / "synthetic-flat" / "baselines-32px.json").write_text(json.dumps(
        {name: {"iou": 0.1 * (i + 1)} for i, name in enumerate(ladder.BASELINE_NAMES)}))
    assert ladder.main(["--runs", str(tmp_path), "table", "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "| synthetic-flat | nz3 | 0 | 500 | 0.400 / 0.910 / - | 0.905 |" in out
    assert "| synthetic-flat (32px) | 0.100 | 0.200 | 0.300 | 0.400 |" in out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows[0]["test_iou"] == 0.905


def test_every_setting_is_valid_for_redo_train():
    """Each named setting parses as ``redo train`` options on the synthetic preset."""
    from redo_lib.cli import main

    ladder = _ladder()
    for options in ladder.SETTINGS.values():
        assert main(["train", "--preset", "synthetic-flat", "--print-config", *options]) == 0


def test_publish_copies_the_small_files_only(tmp_path):
    ladder = _ladder()
    run = tmp_path / "runs" / "synthetic-flat" / "nz3" / "seed1"
    run.mkdir(parents=True)
    # best at step 500, then a collapse and an automatic restart: the grids after it are "_r1"
    records = [{"step": 250, "iteration": 250, "restart": 0, "iou": 0.3, "is_best": True},
               {"step": 500, "iteration": 500, "restart": 0, "iou": 0.5, "is_best": True},
               {"event": "auto_restart", "step": 500, "iteration": 500, "restart": 1},
               {"step": 250, "iteration": 750, "restart": 1, "iou": 0.4, "is_best": False}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "test.json").write_text(json.dumps({"iou": 0.8, "step": 500}))
    (run / "command.txt").write_text("redo train ...\n")
    (run / "best.pt").write_bytes(b"big")
    for name in ("samples_000250", "samples_000500", "samples_r1_000250"):
        (run / f"{name}.png").write_bytes(name.encode())
    (tmp_path / "runs" / "synthetic-flat" / "baselines-32px.json").write_text("{}")
    assert ladder.main(["--runs", str(tmp_path / "runs"), "publish", "--to", str(tmp_path / "out")]) == 0
    target = tmp_path / "out" / "synthetic-flat" / "nz3" / "seed1"
    assert sorted(p.name for p in target.iterdir()) == [
        "command.txt", "metrics.jsonl", "samples_best.png", "samples_last.png", "test.json"]
    assert (target / "samples_last.png").read_bytes() == b"samples_r1_000250"
    assert (target / "samples_best.png").read_bytes() == b"samples_000500"
    assert (tmp_path / "out" / "synthetic-flat" / "baselines-32px.json").exists()


def test_a_folder_set_trains_and_scores_under_its_own_name(tmp_path, monkeypatch):
    """``--data-root`` runs ``redo`` on the folder data set; ``--dataset`` names the run's folder."""
    import subprocess

    ladder = _ladder()
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps({"iou": 0.5, "seconds_per_image": 0.0}))

    monkeypatch.setattr(ladder.subprocess, "call", lambda command, **kwargs: calls.append(command) or 0)
    monkeypatch.setattr(ladder.subprocess, "run", fake_run)
    assert ladder.main(["--runs", str(tmp_path), "train", "preset", "--dataset", "folder-textured",
                        "--data-root", "data/folder-textured", "--steps", "100", "--seed", "1"]) == 0
    run = tmp_path / "folder-textured" / "preset" / "seed1"
    words = (run / "command.txt").read_text().split()
    assert words[words.index("--dataset") + 1] == "folder"
    assert words[words.index("--data-root") + 1] == "data/folder-textured"
    assert words[words.index("--out") + 1] == str(run)
    assert words[words.index("--max-iterations") + 1] == "100"  # restarts included
    assert json.loads((run / "test.json").read_text())["iou"] == 0.5
    (run / "last.pt").write_bytes(b"state")  # a second call resumes the run: same stored command
    assert ladder.main(["--runs", str(tmp_path), "train", "preset", "--dataset", "folder-textured",
                        "--data-root", "data/folder-textured", "--steps", "100", "--seed", "1"]) == 0
    assert calls[-2][-1] == "--resume" and (run / "command.txt").read_text().split() == words
    assert ladder.main(["--runs", str(tmp_path), "baselines", "--dataset", "folder-textured",
                        "--data-root", "data/folder-textured"]) == 0
    assert all(c[c.index("--data-root") + 1] == "data/folder-textured" for c in calls[-5:])
    stored = json.loads((tmp_path / "folder-textured" / "baselines-32px.json").read_text())
    assert set(stored) == set(ladder.BASELINE_NAMES)
