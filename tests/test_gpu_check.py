"""benchmarks/gpu_check.sh on a machine without a GPU, its results table, and train_step's float32 path.

The script itself is run with CUDA hidden (CUDA_VISIBLE_DEVICES=""), so that this test
takes the no-GPU path, and finishes in seconds, on any machine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
README = ROOT / "benchmarks" / "README.md"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args, env_extra=None, timeout=120):
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", **(env_extra or {})}
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path):
    before = _digest(README)
    out = tmp_path / "out"
    done = _run(out)
    assert done.returncode == 0, done.stderr
    assert "no GPU" in done.stdout
    assert _digest(README) == before
    assert not out.exists()  # nothing was run, nothing was written


def _fake_results(out: Path, *, amp_compile_rc: int = 0) -> None:
    out.mkdir()
    (out / "env.json").write_text(json.dumps({"date": "2026-01-02", "gpu": "Tesla T4", "capability": "7.5",
                                              "torch": "2.5.1", "cuda": "12.4"}))

    def step(name, rc, result=None, err=""):
        (out / f"{name}.rc").write_text(f"{rc}\n")
        (out / f"{name}.out").write_text("log line\n" + (json.dumps(result) + "\n" if result else ""))
        (out / f"{name}.err").write_text(err)

    step("flowers_float32", 0, {"plain": {"it_per_s": 0.61, "peak_mem_mb": 14336.0, "amp": "off"}})
    step("flowers_amp", 0, {"fast": {"it_per_s": 2.345, "peak_mem_mb": 8192.0, "amp": "float16"}})
    step("flowers_amp_compile", amp_compile_rc, None, "torch.OutOfMemoryError: CUDA out of memory.")
    step("synthetic_train", 0)
    (out / "synthetic_train.seconds").write_text("95\n")
    step("synthetic_eval", 0, {"iou": 0.4321, "accuracy": 0.8})


def test_results_table(tmp_path):
    """The table step (run by the script after the measurements) from saved results."""
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nSome text.\n")
    out = tmp_path / "run1"
    _fake_results(out, amp_compile_rc=1)
    done = _run("--table-only", out, env_extra={"GPU_CHECK_README": str(readme)})
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nSome text.\n\n## GPU check results (`gpu_check.sh`)")
    row = [line for line in text.splitlines() if line.startswith("| 2026-01-02")]
    assert row == ["| 2026-01-02 | Tesla T4 (7.5) | 2.5.1 / 12.4 | 0.61 it/s, 14.0 GiB peak | "
                   "2.35 it/s (float16), 8.0 GiB peak | out of memory | 95 s, IoU 0.432 |"]
    # A second run adds a row to the same table (a timed-out step says so).
    out2 = tmp_path / "run2"
    _fake_results(out2, amp_compile_rc=124)
    assert _run("--table-only", out2, env_extra={"GPU_CHECK_README": str(readme)}).returncode == 0
    lines = readme.read_text().splitlines()
    assert lines.count("## GPU check results (`gpu_check.sh`)") == 1
    rows = [line for line in lines if line.startswith("| 2026")]
    assert len(rows) == 2 and "timed out" in rows[1]
    table = lines[lines.index("## GPU check results (`gpu_check.sh`)") + 4:]
    assert [line.startswith("|") for line in table] == [True] * len(table)  # header, rule, rows: one table


def _train_step():
    spec = importlib.util.spec_from_file_location("train_step_bench", ROOT / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_benchmark_path_is_float32_for_real():
    """The plain path switches TF32 off (the trainer turns it on for CUDA) before each iteration."""
    train_step = _train_step()
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        train_step._set_tf32(SimpleNamespace(bench_tf32=False))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        train_step._set_tf32(SimpleNamespace(bench_tf32=True))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        args = SimpleNamespace(preset="synthetic-flat", batch_size=2, device="cpu", image_size=None, no_amp=False,
                               no_channels_last=False, compile=False)
        for path in ("plain", "fast"):
            trainer = train_step._trainer(args, path)
            assert trainer.bench_tf32 is False  # no TF32 on the CPU; the plain path never has it
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
