"""The mixed-precision rule (redo_lib.utils.amp_choice), with the GPU's capability mocked.

bfloat16 only on compute capability >= 8.0; older cards (a T4: 7.5) get float16 with a
gradient scaler, although torch.cuda.is_bf16_supported() says yes there (emulated, slow).
Nothing here needs a GPU: torch.device("cuda") can be built on any machine.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from redo_lib.utils import AmpChoice, amp_choice, amp_dtype

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def capability(monkeypatch):
    """Set the mocked capability; records which device each query asked for."""
    asked = []

    def set_capability(value):
        def fake(device=None):
            asked.append(device)
            return value

        monkeypatch.setattr(torch.cuda, "get_device_capability", fake)
        # An emulated bf16 answers yes on a T4: the rule must not look at it.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        return asked

    return set_capability


def test_t4_gets_float16_with_a_scaler(capability):
    capability((7, 5))
    assert amp_choice(torch.device("cuda")) == AmpChoice(torch.float16, True)
    assert amp_dtype("cuda") == torch.float16


@pytest.mark.parametrize("cap", [(8, 0), (8, 6), (9, 0), (10, 0)])
def test_ampere_and_later_get_bfloat16_without_a_scaler(capability, cap):
    capability(cap)
    assert amp_choice("cuda") == AmpChoice(torch.bfloat16, False)
    assert amp_dtype(torch.device("cuda")) == torch.bfloat16


@pytest.mark.parametrize("cap", [(6, 0), (7, 0), (7, 5)])
def test_older_cards_get_float16(capability, cap):
    capability(cap)
    assert amp_choice("cuda") == AmpChoice(torch.float16, True)


def test_the_capability_of_the_chosen_gpu_is_read(capability):
    asked = capability((8, 0))
    amp_choice("cuda:1")
    assert asked == [torch.device("cuda", 1)]


def test_cpu_has_no_autocast(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the CPU rule must not query CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_capability", fail)
    assert amp_choice(torch.device("cpu")) == AmpChoice(None, False)
    assert amp_dtype("cpu") is None


def test_one_rule_in_the_package():
    """No other module picks an AMP dtype itself (training and evaluate use amp_choice)."""
    offenders = []
    for path in (ROOT / "redo_lib").rglob("*.py"):
        if path.name == "utils.py" and path.parent.name == "redo_lib":
            continue
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        if re.search(r"torch\.(bfloat16|float16)\b|is_bf16_supported|get_device_capability", code):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    trainer = (ROOT / "redo_lib" / "training" / "trainer.py").read_text()
    assert "amp_choice(self.device)" in trainer
    cli = (ROOT / "redo_lib" / "cli.py").read_text()
    assert "amp_dtype(device)" in cli


def test_evaluate_amp_follows_the_rule(monkeypatch, capability):
    """`redo evaluate --amp` passes amp_dtype(device) to evaluate_masks (bf16 / fp16 / None)."""
    import redo_lib.cli as cli
    import redo_lib.training.evaluation as evaluation
    import redo_lib.training.trainer as trainer

    seen = {}

    def fake_evaluate(predict, dataset, n_regions, **kwargs):
        seen["dtype"] = kwargs.get("autocast_dtype")
        return {"n_images": 1, "accuracy": 1.0, "iou": 1.0}

    class OneImage:
        has_masks = True

        def __len__(self):
            return 1

    monkeypatch.setattr(evaluation, "evaluate_masks", fake_evaluate)
    monkeypatch.setattr(evaluation, "has_masks", lambda dataset: True)
    monkeypatch.setattr(cli, "load_split", lambda *a, **k: OneImage())
    args = argparse.Namespace(checkpoint=None, baseline="always_center", dataset="synthetic", image_size=32,
                              data_root=None, split="test", batch_size=4, max_images=None, num_workers=0,
                              json=True, amp=True, device="cuda")
    baselines = pytest.importorskip("redo_lib.baselines")
    monkeypatch.setitem(baselines.BASELINES, "always_center", lambda images: images[:, :1])
    for device, cap, expected in [("cuda", (7, 5), torch.float16), ("cuda", (8, 0), torch.bfloat16),
                                  ("cpu", (8, 0), None)]:
        capability(cap)
        monkeypatch.setattr(trainer, "resolve_device", lambda name, *a, **k: torch.device(device))
        seen.clear()
        assert cli.cmd_evaluate(args) == 0
        assert seen["dtype"] == expected, (device, cap)
    args.amp = False
    capability((8, 0))
    seen.clear()
    assert cli.cmd_evaluate(args) == 0
    assert seen["dtype"] is None
