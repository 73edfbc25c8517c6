"""The ``redo`` command line, run in-process through ``main(argv)``."""
import argparse
import json

import pytest
import torch

from redo_lib import ReDO
from redo_lib.cli import main
from redo_lib.training import load_checkpoint, load_model

from .conftest import tiny_config
from .test_trainer import _fast_tiny_convolutions  # noqa: F401 (autouse fixture)

TINY = [f"--set=model.{k}={v}" for k, v in tiny_config().__dict__.items()
        if k in ("nz", "nf_mask", "n_res_mask", "nf_gen", "nf_disc", "nf_info")]
SMALL_EVAL = ["--set=train.max_eval_images=8", "--set=train.train_eval_images=8", "--set=train.eval_batch_size=8"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ")
    assert "Traceback" not in err
    return lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of 4 steps of the tiny model on synthetic data (shared by the read-only tests)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--preset", "synthetic-flat", "--out", str(out), "--steps", "4", "--eval-every", "2",
                 "--batch-size", "4", "--device", "cpu", "--quiet", *TINY, *SMALL_EVAL])
    assert code == 0
    return out


def test_train_writes_the_run_folder(trained):
    assert {"last.pt", "best.pt", "metrics.jsonl"} <= {p.name for p in trained.iterdir()}
    state = load_checkpoint(trained / "last.pt")
    assert state["step"] == 4 and state["config"]["model"]["nf_gen"] == 4
    assert state["config"]["train"]["dataset"] == "synthetic-flat"


def test_evaluate_json(trained, capsys):
    code, out, err = run(capsys, "evaluate", "--checkpoint", trained / "best.pt", "--json",
                         "--max-images", 16, "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert {"accuracy", "iou", "accuracy_dataset", "iou_dataset", "n_images"} <= set(result)
    assert result["n_images"] == 16 and result["split"] == "test" and result["image_size"] == 32
    assert 0 <= result["iou"] <= 1


def test_evaluate_text_and_baseline(trained, capsys):
    code, out, _ = run(capsys, "evaluate", "--checkpoint", trained / "last.pt", "--split", "val",
                       "--max-images", 8, "--device", "cpu")
    assert code == 0 and "per-image polarity" in out and "data-set polarity" in out
    code, out, err = run(capsys, "evaluate", "--baseline", "centred-disk", "--dataset", "synthetic",
                         "--image-size", 32, "--max-images", 8, "--json")
    assert code == 0, err
    assert json.loads(out)["baseline"] == "centred-disk"
    code, _, err = run(capsys, "evaluate", "--baseline", "centred-disk")
    assert code == 2 and "--dataset" in one_error_line(err)
    code, _, err = run(capsys, "evaluate", "--baseline", "nope", "--dataset", "synthetic")
    assert code == 2 and "kmeans" in one_error_line(err)


def test_redraw_writes_a_png(trained, tmp_path, capsys):
    output = tmp_path / "figures" / "redraw.png"
    code, _, err = run(capsys, "redraw", "--checkpoint", trained / "best.pt", "--n-images", 2, "--n-z", 2,
                       "--device", "cpu", "--output", output)
    assert code == 0, err
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_to_the_new_total(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    base = ["train", "--out", out, "--eval-every", 2, "--device", "cpu", "--quiet"]
    code, _, err = run(capsys, *base, "--preset", "synthetic-flat", "--steps", 2, "--batch-size", 4, *TINY, *SMALL_EVAL)
    assert code == 0, err
    code, _, err = run(capsys, *base, "--preset", "synthetic-flat", "--steps", 4)
    assert code == 2 and "--resume" in one_error_line(err)
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    code, stdout, err = run(capsys, *base, "--resume", "--steps", 4)  # the stored configuration
    monkeypatch.undo()
    assert code == 0, err
    assert reads.count(str(out / "last.pt")) == 1  # read once: for the configuration and the trainer
    assert f"resuming from {out / 'last.pt'} at step 2" in err
    assert "step 4" in stdout
    assert load_checkpoint(out / "last.pt")["step"] == 4
    events = [json.loads(line).get("event") for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1
    # another configuration is refused, naming what differs
    code, _, err = run(capsys, *base, "--resume", "--steps", 6, "--set", "model.nz=4")
    assert code == 2 and "model.nz: checkpoint 8, requested 4" in one_error_line(err)
    code, _, err = run(capsys, *base, "--resume", "--steps", 6, "--preset", "flowers")
    assert code == 2 and "another configuration" in one_error_line(err)


@pytest.mark.parametrize("argv, expected", [
    (["train", "--preset", "nope"], "choose from 'flowers', 'lfw', 'cub', 'cmnist', 'synthetic-flat'"),
    (["train"], "valid presets: flowers, lfw, cub, cmnist, synthetic"),
    (["train", "--preset", "synthetic-flat", "--set", "train.nope=1"], "valid options: dataset, batch_size"),
    (["train", "--preset", "synthetic-flat", "--set", "model.nz=x"], "expected a value of type int"),
    (["train", "--preset", "synthetic-flat", "--image-size", "48"], "choose one of (32, 64, 128)"),
    (["train", "--preset", "synthetic-flat", "--steps", "x"], "invalid int value"),
    (["train", "--preset", "synthetic-flat", "--max-iterations", "-1", "--steps", "1"],
     "train.max_iterations must be >= 0"),
    (["train", "--preset", "synthetic-flat", "--min-area", "1.5", "--steps", "1"], "min_area=1.5: a share of the image"),
    (["train", "--preset", "synthetic-flat", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "--preset", "synthetic-flat", "--dataset", "nope", "--steps", "1"], "valid data sets"),
    (["evaluate", "--checkpoint", "missing.pt"], "checkpoint not found"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_are_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert expected in one_error_line(err)


def test_print_config(capsys):
    code, out, _ = run(capsys, "train", "--preset", "synthetic-flat", "--batch-size", 25, "--print-config",
                       "--set", "loss.regions=one", "--amp", "--max-iterations", 10000, "--min-area", 0.1,
                       "--binarization", 2)
    assert code == 0
    config = json.loads(out)
    assert config["train"]["max_iterations"] == 10000
    assert config["loss"]["min_area"] == 0.1 and config["loss"]["min_area_weight"] == 10.0
    assert config["loss"]["binarization"] == 2.0
    assert config["train"]["batch_size"] == 25 and config["loss"]["regions"] == "one"
    assert config["train"]["amp"] is True and config["model"]["image_size"] == 32


def test_convert_official(tmp_path, monkeypatch, capsys):
    """The plumbing of convert-official (the weight mapping is tested in test_pretrained)."""
    import redo_lib.pretrained as pretrained

    model = ReDO(tiny_config(pyramid_pooling="official"))
    options = argparse.Namespace(dataset="flowers", wrecZ=7.0, batchSize=25, iteration=19500)
    monkeypatch.setattr(pretrained, "read_official", lambda path: {"options": options, "netEncM": {}})
    monkeypatch.setattr(pretrained, "load_official", lambda raw: model)
    source = tmp_path / "official.pth"
    source.write_bytes(b"stand-in")
    code, out, err = run(capsys, "convert-official", source, tmp_path / "converted.pt")
    assert code == 0, err
    loaded, config = load_model(tmp_path / "converted.pt")
    assert config.loss.lambda_z == 7.0 and config.train.batch_size == 25 and config.train.dataset == "flowers"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    code, _, err = run(capsys, "convert-official", tmp_path / "missing.pth", tmp_path / "x.pt")
    assert code == 2 and "not found" in one_error_line(err)


def test_python_dash_m_and_data_command(capsys):
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "synthetic" in out


def test_export_keeps_the_networks_and_drops_the_training_state(trained, tmp_path, capsys):
    out = tmp_path / "slim.pt"
    code, text, err = run(capsys, "export", trained / "last.pt", out)
    assert code == 0, err and "cannot be resumed" in text
    slim, full = load_checkpoint(out), load_checkpoint(trained / "last.pt")
    assert "optimizers" not in slim and "rng" not in slim and slim["step"] == full["step"]
    for net in full["model"]:
        for key, value in full["model"][net].items():
            assert torch.equal(slim["model"][net][key], value)
    assert out.stat().st_size < (trained / "last.pt").stat().st_size / 2  # no Adam moments
    code, text, err = run(capsys, "evaluate", "--checkpoint", out, "--json", "--max-images", 8, "--device", "cpu")
    assert code == 0, err
    code, _, err = run(capsys, "export", tmp_path / "missing.pt", out)
    assert code != 0 and "checkpoint not found" in err


def test_old_preset_name_still_trains_with_a_notice(capsys):
    """``--preset synthetic`` (renamed ``synthetic-flat``) prints the same configuration and
    a notice naming the new preset."""
    code, new, _ = run(capsys, "train", "--preset", "synthetic-flat", "--print-config")
    assert code == 0
    code, old, err = run(capsys, "train", "--preset", "synthetic", "--print-config")
    assert code == 0 and old == new
    assert "now called 'synthetic-flat'" in err
