"""benchmarks/folder_sets.py: held-out flat and textured sets in the ``folder`` layout."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Dict

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"train": 12, "val": 4, "test": 4}
N_SAMPLES = 60


def _folder_sets() -> ModuleType:
    """The script, imported by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("folder_sets", ROOT / "benchmarks" / "folder_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fs = _folder_sets()


def _files(root: Path) -> Dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _inside_std(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean over channels of the std of the object's pixel values on [0, 1]."""
    return float((image[mask] / 255.0).std(axis=0).mean())


@pytest.mark.parametrize("kind", fs.KINDS)
def test_a_small_set_loads_with_the_folder_loader(tmp_path: Path, kind: str) -> None:
    from redo_lib.data import load_dataset

    root = tmp_path / f"folder-{kind}"
    summary = fs.write_folder_set(root, kind, COUNTS, size=32, seed=0, progress=False)
    assert summary["counts"] == COUNTS
    assert not list(tmp_path.glob("*.tmp-*"))  # renamed into place
    assert (root / "splits" / "train.txt").read_text().splitlines()[:2] == ["train_00000", "train_00001"]
    for split, n in COUNTS.items():
        data = load_dataset("folder", root, split, image_size=32)
        assert len(data) == n and data.has_masks
        item = data[n - 1]
        assert tuple(item["image"].shape) == (3, 32, 32) and tuple(item["mask"].shape) == (1, 32, 32)
        assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
        lo, hi = fs.AREA_RANGES[kind]
        assert lo <= float(item["mask"].float().mean()) <= hi
    with open(root / "objects.csv") as handle:
        assert sum(1 for _ in handle) == 1 + sum(COUNTS.values())


def test_flat_areas_border_and_constant_colour() -> None:
    lo, hi = fs.AREA_RANGES["flat"]
    areas, touching = [], []
    for i in range(N_SAMPLES):
        shape = fs.FLAT_SHAPES[i % 3]
        image, mask = fs.render_flat(fs.image_rng(1, "flat", "train", i), 32, shape=shape)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and mask.dtype == bool
        areas.append(mask.mean())
        touching.append(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        assert _inside_std(image, mask) < 0.03  # flat apart from the 0.02 noise
        clean, clean_mask = fs.render_flat(fs.image_rng(1, "flat", "train", i), 32, shape=shape, noise=0.0)
        assert np.array_equal(clean_mask, mask) and _inside_std(clean, clean_mask) < 1e-9
    assert lo <= min(areas) and max(areas) <= hi
    assert 0.08 <= np.mean(touching) <= 0.5  # about a quarter
    for i in range(5):  # the border condition can be asked for
        _, mask = fs.render_flat(np.random.default_rng(i), 32, touch=False)
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        _, mask = fs.render_flat(np.random.default_rng(i), 32, touch=True)
        assert mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()


def test_flat_object_colour_is_far_from_the_background() -> None:
    for i in range(20):
        image, mask = fs.render_flat(fs.image_rng(2, "flat", "val", i), 32, noise=0.0)
        inside = image[mask].astype(float).mean(axis=0) / 255
        outside = image[~mask].astype(float) / 255
        nearest = np.linalg.norm(outside - inside, axis=1).min()
        assert nearest >= fs.FLAT_MIN_COLOUR_DISTANCE - 0.01  # uint8 rounding


def test_textured_areas_and_texture_inside_the_object() -> None:
    lo, hi = fs.AREA_RANGES["textured"]
    stds: Dict[str, list] = {t: [] for t in fs.TEXTURES}
    for i in range(N_SAMPLES):
        texture = fs.TEXTURES[i % 3]
        rng = fs.image_rng(1, "textured", "train", i)
        image, mask = fs.render_textured(rng, 32, texture=texture, noise=0.0)
        assert lo <= mask.mean() <= hi
        stds[texture].append(_inside_std(image, mask))
    for texture, values in stds.items():
        assert min(values) > 0.04, texture  # varies inside the object without any pixel noise
        assert np.median(values) > 0.06, texture
    with pytest.raises(ValueError, match="texture"):
        fs.render_textured(np.random.default_rng(0), 32, texture="plaid")


def test_all_variants_occur_in_equal_shares(tmp_path: Path) -> None:
    textured = fs.write_folder_set(tmp_path / "t", "textured", {"train": 6, "val": 3, "test": 0},
                                   seed=0, progress=False)
    assert textured["variants"] == {t: 3 for t in sorted(fs.TEXTURES)}
    assert textured["counts"]["test"] == 0 and (tmp_path / "t" / "splits" / "test.txt").read_text() == ""
    flat = fs.write_folder_set(tmp_path / "f", "flat", {"train": 9}, seed=0, progress=False)
    assert flat["variants"] == {s: 3 for s in sorted(fs.FLAT_SHAPES)}
    rows = (tmp_path / "t" / "objects.csv").read_text().splitlines()
    assert rows[1].startswith("train_00000,train,stripes,")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    counts = {"train": 3, "val": 1, "test": 1}
    for kind in fs.KINDS:
        a = fs.write_folder_set(tmp_path / f"{kind}-a", kind, counts, seed=5, progress=False)
        fs.write_folder_set(tmp_path / f"{kind}-b", kind, counts, seed=5, progress=False)
        fs.write_folder_set(tmp_path / f"{kind}-c", kind, counts, seed=6, progress=False)
        files_a, files_b = _files(tmp_path / f"{kind}-a"), _files(tmp_path / f"{kind}-b")
        files_c = _files(tmp_path / f"{kind}-c")
        assert files_a == files_b and len(files_a) == 2 * 5 + 3 + 1
        assert sorted(files_a) == sorted(files_c)
        assert all(files_a[k] != files_c[k] for k in files_a if k.startswith("images/"))
        assert a["seed"] == 5
        # the test split alone is the same images (the shipped-checkpoint test draws it so)
        fs.write_folder_set(tmp_path / f"{kind}-test", kind, {"test": 1}, seed=5, progress=False)
        test_only = _files(tmp_path / f"{kind}-test")
        assert test_only["images/test_00000.png"] == files_a["images/test_00000.png"]
        assert test_only["masks/test_00000.png"] == files_a["masks/test_00000.png"]
    # one image does not depend on how many others are written
    small = fs.write_folder_set(tmp_path / "small", "flat", {"train": 1}, seed=5, progress=False)
    assert small["counts"]["train"] == 1
    assert _files(tmp_path / "small")["images/train_00000.png"] == _files(tmp_path / "flat-a")[
        "images/train_00000.png"]


def test_existing_directory_is_refused_unless_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["--kind", "flat", "--out", str(out), "--train", "3", "--val", "0", "--test", "0", "--quiet"]
    assert fs.main(args) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert (out / "keep.txt").read_text() == "mine" and not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(FileExistsError, match="existing"):
        fs.write_folder_set(out, "flat", {"train": 1}, progress=False)
    assert fs.main([*args, "--force"]) == 0
    line = capsys.readouterr().out.strip().splitlines()
    assert len(line) == 1 and "train 3" in line[0] and "touching the border" in line[0]
    assert "nan" not in line[0]  # the empty val and test splits have no mean area to print
    assert not (out / "keep.txt").exists() and len(list((out / "images").iterdir())) == 3
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))


def test_command_line_kind_as_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub"
    assert fs.main(["textured", "--out", str(out), "--train", "2", "--val", "1", "--test", "1",
                    "--size", "24", "--quiet"]) == 0
    assert "folder-textured (24 px" in capsys.readouterr().out
    from PIL import Image

    with Image.open(out / "images" / "val_00000.png") as image:
        assert image.mode == "RGB" and image.size == (24, 24)
    with Image.open(out / "masks" / "val_00000.png") as mask:
        assert mask.mode == "L" and set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    with pytest.raises(SystemExit):
        fs.main(["--out", str(tmp_path / "none")])  # no kind
    assert not (tmp_path / "none").exists()
