"""benchmarks/region_shares.py: the smaller region's soft and hard shares of a checkpoint."""
import json
import sys
from pathlib import Path

import pytest

from redo_lib.cli import main as redo

from .test_cli import SMALL_EVAL, TINY
from .test_trainer import _fast_tiny_convolutions  # noqa: F401 (autouse fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import region_shares  # noqa: E402


def test_prints_quantiles_of_the_smaller_region(tmp_path, capsys):
    out = tmp_path / "run"
    assert redo(["train", "--preset", "synthetic-flat", "--out", str(out), "--steps", "2", "--eval-every", "2",
                 "--batch-size", "4", "--device", "cpu", "--quiet", *TINY, *SMALL_EVAL]) == 0
    capsys.readouterr()
    assert region_shares.main([str(out / "last.pt"), "--images", "12", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["iteration"] == 2
    for kind in ("soft", "hard"):
        values = result[kind]
        assert len(values) == len(region_shares.QUANTILES)
        assert values == sorted(values) and 0 <= values[0] and values[-1] <= 1
    # the smaller region is chosen by its soft share: at most half of the image, K = 2
    assert result["soft"][-1] <= 0.5 + 1e-6


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(SystemExit, match="checkpoint not found: .*missing.pt"):
        region_shares.main([str(tmp_path / "missing.pt")])
