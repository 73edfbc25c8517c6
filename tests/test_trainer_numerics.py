"""GPU-safe numerics of the trainer, checked on the CPU: float32 evaluation, the gradient
scaler's record, fused Adam on CUDA only, CUDA backend flags scoped to the run."""
import pytest
import torch

import redo_lib.training.trainer as trainer_module
from redo_lib.training import load_checkpoint
from redo_lib.training.evaluation import evaluate_model
from redo_lib.training.trainer import backend_flags, run_backend_flags, use_fused_adam

from .test_trainer import _fast_tiny_convolutions, full_state, make_config, make_data, make_trainer  # noqa: F401
from .test_trainer import read_metrics


def _autocast_seen_by_mask_net(model):
    seen = []
    model.mask_net.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    return seen


def test_evaluation_runs_in_float32_even_inside_autocast(tmp_path):
    trainer = make_trainer(tmp_path / "run", make_config(steps=2, eval_every=2))
    seen = _autocast_seen_by_mask_net(trainer.model)
    trainer.amp_dtype = torch.bfloat16  # as on an A100 with --amp: training autocasts, evaluation must not
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = trainer.evaluate()
        _, val = make_data()
        direct = evaluate_model(trainer.model, val, batch_size=8, max_images=8)
    assert seen and not any(seen)
    assert scores["val"]["iou"] == direct["iou"]  # the same float32 numbers, whoever asks
    seen.clear()
    evaluate_model(trainer.model, val, batch_size=8, max_images=8, autocast_dtype=torch.bfloat16)
    assert seen and all(seen)  # an explicit request (redo evaluate --amp) is still honoured


def test_gradient_scaler_scale_and_skipped_updates_are_in_metrics(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=4, eval_every=2, log_every=1))
    # a float16 run's scalers, on the CPU (torch.amp.GradScaler("cpu") has the same rule)
    trainer._use_scaler = True
    trainer.scalers = {name: torch.amp.GradScaler("cpu", init_scale=1024.0) for name in ("g", "d")}
    weight = next(trainer.model.generator.parameters())
    weight.register_hook(lambda grad: grad * float("inf") if trainer.step == 2 else grad)  # 3rd iteration
    trainer.fit()
    evals = [r for r in read_metrics(out) if "event" not in r]
    assert [r["skipped_steps"] for r in evals] == [{"g": 0, "d": 0}, {"g": 1, "d": 0}]
    assert evals[-1]["amp_scale"] == {"g": 512.0, "d": 1024.0}  # backed off once, after the skip
    assert all(torch.isfinite(p).all() for p in trainer.model.generator.parameters())
    assert load_checkpoint(out / "last.pt")["scalers"]["g"]["scale"] == 512.0


def test_without_a_scaler_metrics_have_no_scaler_keys(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, make_config(steps=2, eval_every=2)).fit()
    start, evaluation = read_metrics(out)[0], read_metrics(out)[-1]
    assert "amp_scale" not in evaluation and "skipped_steps" not in evaluation
    assert start["event"] == "start" and start["backend_flags"] is None and start["fused_adam"] is False
    assert start["grad_scaler"] is False and start["amp"] is None


def test_fused_adam_is_chosen_on_cuda_only(tmp_path, monkeypatch):
    assert use_fused_adam("cuda") and use_fused_adam(torch.device("cuda:1")) and use_fused_adam("cuda:0")
    assert not use_fused_adam("cpu") and not use_fused_adam(torch.device("cpu"))
    # One iteration: the same gradients reach both optimizers, so the states differ only by
    # the kernels' rounding. From the second on they compare noise: a convolution's bias
    # before an instance norm has a true gradient of zero, its computed one is rounding
    # noise, which Adam scales to +-lr, and its sign follows the last bits of the weights.
    plain = make_trainer(tmp_path / "plain", make_config(steps=1, eval_every=1))
    assert all(not g["fused"] for opt in plain.optimizers.values() for g in opt.param_groups)
    # what the trainer builds when the choice says fused (CPU fused Adam: the same update, other kernel)
    monkeypatch.setattr(trainer_module, "use_fused_adam", lambda device: True)
    fused = make_trainer(tmp_path / "fused", make_config(steps=1, eval_every=1))
    for name, opt in fused.optimizers.items():
        reference = plain.optimizers[name].param_groups[0]
        group = opt.param_groups[0]
        assert group["fused"] is True
        for key in ("lr", "betas", "weight_decay", "eps", "amsgrad", "maximize"):
            assert group[key] == reference[key], (name, key)
    plain.fit()
    fused.fit()
    a, b = full_state(plain), full_state(fused)
    assert a.keys() == b.keys() and any(key.endswith("exp_avg") for key in a)  # both stepped
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=1e-4, atol=1e-6), key


def test_a_fused_checkpoint_resumes_with_this_devices_adam(tmp_path, monkeypatch):
    """load_state_dict would carry the writer's fused flag (a GPU run's checkpoint on the CPU)."""
    monkeypatch.setattr(trainer_module, "use_fused_adam", lambda device: True)
    make_trainer(tmp_path / "run", make_config(steps=2, eval_every=2)).fit()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["optimizers"]["generator"]["param_groups"][0]["fused"]
    monkeypatch.undo()
    resumed = make_trainer(tmp_path / "run", make_config(steps=4, eval_every=2), resume=True)
    for opt in resumed.optimizers.values():
        assert all(not g["fused"] for g in opt.param_groups)
        assert all(s["step"].device.type == "cpu" and s["step"].dtype == torch.float32 for s in opt.state.values())
    assert resumed.fit()["step"] == 4


def test_cuda_backend_flags_hold_for_the_run_only():
    before = backend_flags()
    with run_backend_flags(torch.device("cpu"), tf32=True) as flags:
        assert flags is None and backend_flags() == before  # the CPU: nothing touched
    for tf32, precision in ((True, "tf32"), (False, "ieee")):
        with run_backend_flags(torch.device("cuda"), tf32=tf32) as flags:
            assert flags["cudnn_benchmark"] is True and torch.backends.cudnn.benchmark
            if "matmul_fp32_precision" in flags:
                assert flags["matmul_fp32_precision"] == flags["conv_fp32_precision"] == precision
            else:
                assert flags["matmul_allow_tf32"] is flags["cudnn_allow_tf32"] is tf32
        assert backend_flags() == before
    with pytest.raises(RuntimeError, match="boom"):
        with run_backend_flags(torch.device("cuda"), tf32=True):
            raise RuntimeError("boom")
    assert backend_flags() == before  # restored after a failure too


def test_fit_scopes_the_flags_and_logs_them(tmp_path, monkeypatch):
    """fit() runs inside run_backend_flags(device, train.tf32) and logs what it yields."""
    calls = []
    real = trainer_module.run_backend_flags

    def recording(device, tf32):
        calls.append((str(device), tf32))
        return real(torch.device("cuda"), tf32)  # the CUDA branch, on the CPU

    monkeypatch.setattr(trainer_module, "run_backend_flags", recording)
    before = backend_flags()
    out = tmp_path / "run"
    make_trainer(out, make_config(steps=2, eval_every=2, tf32=False)).fit()
    assert calls == [("cpu", False)]
    assert backend_flags() == before
    logged = read_metrics(out)[0]["backend_flags"]
    assert logged["cudnn_benchmark"] is True
    assert logged.get("matmul_fp32_precision", "ieee") == "ieee" and logged.get("matmul_allow_tf32") in (None, False)
