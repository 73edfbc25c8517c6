"""redo_lib.ladder reads the stored ladder runs the way benchmarks/ladder.py writes them."""
from __future__ import annotations

import json

import pytest

from redo_lib import get_preset, ladder


def _run(root, dataset, setting, seed, command, iou=None, curve=((60.0, 0.3), (120.0, 0.6))):
    folder = root / dataset / setting / f"seed{seed}"
    folder.mkdir(parents=True)
    lines = [json.dumps({"event": "start", "step": 0})]
    lines += [json.dumps({"step": 10 * i, "iteration": 10 * i, "seconds": s, "iou": v}) for i, (s, v) in enumerate(curve, 1)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "command.txt").write_text(command + "\n")
    if iou is not None:
        (folder / "test.json").write_text(json.dumps({"iou": iou}))


def test_reads_runs_scores_baselines_and_finds_the_preset(tmp_path):
    base = "redo train --preset synthetic-flat --dataset synthetic-flat --out runs/x --quiet"
    _run(tmp_path, "synthetic-flat", "long-code", 0, base + " --set model.nz=8", iou=0.4)
    for seed, iou in ((0, 0.8), (1, 0.9)):
        _run(tmp_path, "synthetic-flat", "preset-like", seed, base, iou=iou)
    _run(tmp_path, "synthetic", "preset-like", 0, base.replace("synthetic-flat", "synthetic"))
    (tmp_path / "synthetic-flat" / "baselines-32px.json").write_text(json.dumps({"kmeans": {"iou": 1.0}}))

    assert ladder.seeds("synthetic-flat", "preset-like", tmp_path) == [0, 1]
    assert ladder.settings("synthetic-flat", tmp_path) == ["long-code", "preset-like"]
    assert ladder.settings("synthetic-soft", tmp_path) == []
    curves = ladder.runs("synthetic-flat", "preset-like", tmp_path)
    assert list(curves) == ["preset-like seed 0", "preset-like seed 1"] and len(curves["preset-like seed 1"]) == 2
    assert ladder.test_scores("synthetic-flat", "preset-like", 1, tmp_path)["iou"] == 0.9
    assert ladder.test_scores("synthetic", "preset-like", 0, tmp_path) is None
    assert ladder.baselines("synthetic-flat", root=tmp_path) == {"kmeans": 1.0}
    assert ladder.config_of_command("synthetic-flat", "long-code", 0, tmp_path)["model"]["nz"] == 8
    assert ladder.preset_setting(root=tmp_path) == "preset-like"
    assert ladder.differences("synthetic-flat", "preset-like", root=tmp_path) == {}
    assert ladder.differences("synthetic-flat", "long-code", root=tmp_path) == {"model.nz": (3, 8)}
    assert ladder.changes("synthetic-flat", "long-code", "preset-like", root=tmp_path) == {"model.nz": (3, 8)}
    assert ladder.recorded_config("synthetic-flat", "long-code", 0, tmp_path) is None  # no start record: the command
    rows = {row["level"]: row for row in ladder.summary("preset-like", tmp_path)}
    assert rows["flat"]["ious"] == [0.8, 0.9] and rows["flat"]["minutes"] == 2.0
    assert rows["textured"]["ious"] == [] and rows["textured"]["baselines"] == {}
    assert "gradient" not in rows
    # without a setting: on each level the scored setting nearest to the preset
    _run(tmp_path, "synthetic", "long-code", 0, base.replace("synthetic-flat", "synthetic") + " --set model.nz=8",
         iou=0.3)
    assert ladder.nearest_setting("synthetic-flat", root=tmp_path) == "preset-like"
    assert ladder.nearest_setting("synthetic", root=tmp_path) == "long-code"  # preset-like is not scored there
    rows = {row["level"]: row for row in ladder.summary(root=tmp_path)}
    assert rows["flat"]["setting"] == "preset-like" and rows["flat"]["changes"] == {}
    assert rows["textured"]["ious"] == [0.3] and rows["textured"]["changes"] == {"model.nz": (3, 8)}
    # the same recipe stored twice: the setting with more scored seeds wins over the name
    _run(tmp_path, "synthetic-flat", "preset-copy", 0, base, iou=0.7)
    assert ladder.nearest_setting("synthetic-flat", root=tmp_path) == "preset-like"
    # other data sets stored the same way (the held-out folder sets)
    _run(tmp_path, "folder-mine", "preset-copy", 0, base, iou=0.6)
    (row,) = ladder.summary(root=tmp_path, levels={"mine": "folder-mine"})
    assert row["level"] == "mine" and row["ious"] == [0.6] and row["baselines"] == {}


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/ladder"):
        ladder.runs("synthetic-flat", "x", tmp_path / "missing")
    _run(tmp_path, "synthetic-flat", "odd", 0, "python something.py")
    with pytest.raises(ValueError, match="not a 'redo train' command"):
        ladder.config_of_command("synthetic-flat", "odd", 0, tmp_path)
    other = tmp_path / "other"
    _run(other, "synthetic-flat", "long-code", 0, "redo train --preset synthetic-flat --out x --set model.nz=8")
    with pytest.raises(LookupError, match="'synthetic-flat' preset"):
        ladder.preset_setting(root=other)
    more = get_preset("synthetic-flat").train.d_steps + 1
    _run(other, "synthetic-flat", "more-d-steps", 0, f"redo train --preset synthetic-flat --out x --set train.d_steps={more}")
    with pytest.raises(LookupError, match="'synthetic-flat' preset"):  # a training option of the recipe differs
        ladder.preset_setting(root=other)


def test_the_shipped_ladder_is_consistent():
    """Every stored run of the repository parses, and one of them is the current preset."""
    root = ladder.default_root()
    setting = ladder.preset_setting()
    assert ladder.seeds("synthetic-flat", setting)
    for dataset in [*ladder.LEVELS.values(), *ladder.HELD_OUT.values()]:
        for folder in (root / dataset).glob("*/seed*"):
            setting, seed = folder.parent.name, int(folder.name[4:])
            command = ladder.recipe(ladder.config_of_command(dataset, setting, seed))
            recorded = ladder.recorded_config(dataset, setting, seed)
            # the stored command still gives the recipe the run trained with (benchmarks/ladder.py pin)
            assert recorded is None or ladder.recipe(recorded) == command, f"{folder}: run `ladder.py pin`"


def test_reads_a_stored_probe_and_names_what_is_missing(tmp_path):
    folder = tmp_path / "synthetic" / "strong"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"iou_at_release": 0.95, "curve": [{"step": 200, "iou": 0.9}]}))
    (folder / "command.txt").write_text("python benchmarks/mask_stability.py --warmup 1000\n")
    (folder / "samples_release.png").write_bytes(b"png")
    (tmp_path / "synthetic" / "unfinished").mkdir()  # no result.json: not a probe
    assert ladder.probe_names("synthetic", tmp_path) == ["strong"]
    assert ladder.probe_names("synthetic-flat", tmp_path) == []
    result = ladder.probe("synthetic", "strong", tmp_path)
    assert result["iou_at_release"] == 0.95 and result["command"].endswith("--warmup 1000")
    assert result["grids"] == {"release": folder / "samples_release.png"}
    with pytest.raises(FileNotFoundError, match=r"synthetic/unfinished.*--publish.*stored: strong"):
        ladder.probe("synthetic", "unfinished", tmp_path)


def test_the_stored_probes_are_complete_and_name_their_own_folder():
    root = ladder.probes_root()
    datasets = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert {"synthetic", "synthetic-flat"} <= set(datasets)
    for dataset in datasets:
        for name in ladder.probe_names(dataset):
            result = ladder.probe(dataset, name)
            words = result["command"].split()
            assert words[:2] == ["python", "benchmarks/mask_stability.py"], (dataset, name)
            assert words[words.index("--publish") + 1] == f"data/probes/{dataset}/{name}"
            assert f"train.dataset={dataset}" in words
            assert {"release", "last"} <= set(result["grids"]), (dataset, name)
            assert result["curve"] and result["curve"][-1]["step"] == result["steps"]
            assert {"release", "end"} == set(result["texture"]) and "region0_at_end" in result
