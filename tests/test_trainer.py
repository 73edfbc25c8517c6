"""The training loop: gradient routing, exact resume, metrics, best.pt, auto-restart, NaN stop."""
import json

import pytest
import torch

from redo_lib import LossConfig, ReDOConfig, TrainConfig
from redo_lib.data import load_dataset
from redo_lib.training import Trainer, TrainingDiverged, load_checkpoint
from redo_lib.training.checkpoint import NETWORKS

from .conftest import tiny_config


@pytest.fixture(autouse=True)
def _fast_tiny_convolutions():
    # oneDNN is several times slower than the native kernels on the tests' 4-channel layers
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = previous


def make_config(loss=None, **train) -> ReDOConfig:
    values = dict(dataset="synthetic", batch_size=4, steps=6, eval_every=3, max_eval_images=8,
                  train_eval_images=8, eval_batch_size=8, log_every=2, seed=0)
    values.update(train)
    return ReDOConfig(model=tiny_config(), loss=loss or LossConfig(), train=TrainConfig(**values))


def make_data(n_train=48, n_val=8):
    train = load_dataset("synthetic", None, "train", image_size=32, length=n_train)
    val = load_dataset("synthetic", None, "val", image_size=32, length=n_val)
    return train, val


def make_trainer(out, config=None, resume=False, **kwargs):
    train, val = make_data()
    return Trainer(config or make_config(), out, train, val, resume=resume, progress=False, **kwargs)


def full_state(trainer):
    state = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    for name, opt in trainer.optimizers.items():
        for i, s in opt.state_dict()["state"].items():
            for key, value in s.items():
                state[f"opt.{name}.{i}.{key}"] = value
    return state


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- gradients
def _record_gradient_phases(trainer):
    """Which networks receive a gradient during the generator step (g) and the D step (d)."""
    phase = {"now": None}
    seen = {"g": set(), "d": set()}
    for name in NETWORKS:
        for p in getattr(trainer.model, name).parameters():
            p.register_hook(lambda grad, name=name: seen[phase["now"]].add(name))
    g_forward, d_forward = trainer.g_step.forward, trainer.d_step.forward

    def g(*args, **kwargs):
        phase["now"] = "g"
        return g_forward(*args, **kwargs)

    def d(*args, **kwargs):
        phase["now"] = "d"
        return d_forward(*args, **kwargs)

    trainer.g_step.forward, trainer.d_step.forward = g, d
    return seen


def test_generator_step_gives_no_gradient_to_d_and_d_step_none_to_the_others(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    seen = _record_gradient_phases(trainer)
    trainer.train_iteration()
    assert seen["g"] == {"mask_net", "generator", "info_net"}
    assert seen["d"] == {"discriminator"}
    # D is trainable again after the generator step
    assert all(p.requires_grad for p in trainer.model.discriminator.parameters())


def test_fast_path_matches_the_official_compute_and_zero_path(tmp_path):
    fast = make_trainer(tmp_path / "a")
    plain = make_trainer(tmp_path / "b", freeze_d_in_g_step=False)
    seen = _record_gradient_phases(plain)
    for _ in range(2):
        fast.train_iteration()
        plain.train_iteration()
    assert "discriminator" in seen["g"]  # the official path computes D's gradients ...
    a, b = fast.model.state_dict(), plain.model.state_dict()
    for key in a:  # ... and throws them away: the same updates, bit for bit
        assert torch.equal(a[key], b[key]), key


def test_spectral_norm_power_iterations_match_the_official_forward_count(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    calls = {name: 0 for name in NETWORKS}
    for name in NETWORKS:
        getattr(trainer.model, name).register_forward_hook(
            lambda module, args, out, name=name: calls.__setitem__(name, calls[name] + 1))
    trainer.train_iteration()
    # G step: F, G, D (fakes), delta; D step: F, G (no_grad), D on reals and on fakes
    assert calls == {"mask_net": 2, "generator": 2, "discriminator": 3, "info_net": 1}


@pytest.mark.parametrize("loss", [LossConfig(regions="one"), LossConfig(info_loss="l2_norm"),
                                  LossConfig(lambda_z=0.0)])
def test_loss_variants_run(tmp_path, loss):
    trainer = make_trainer(tmp_path / "run", make_config(loss=loss))
    seen = _record_gradient_phases(trainer)
    for _ in range(2):
        losses = trainer.train_iteration()
        assert torch.isfinite(losses).all()
    assert "discriminator" not in seen["g"] and seen["d"] == {"discriminator"}
    assert ("info_net" in seen["g"]) == (loss.lambda_z > 0)


def test_additions_reach_f_only_and_weight_zero_is_redo(tmp_path):
    """The additions' terms (the minimum-area hinge, the binarisation term) depend on F's
    masks alone: after one iteration F differs from plain ReDO's, G_k and delta do not;
    with weight 0 nothing differs."""
    def after_one_iteration(name, **loss):
        trainer = make_trainer(tmp_path / name, make_config(loss=LossConfig(**loss)))
        trainer.train_iteration()
        return {net: [p.detach().clone() for p in getattr(trainer.model, net).parameters()] for net in NETWORKS}

    def same(a, b, net):
        return all(torch.equal(x, y) for x, y in zip(a[net], b[net]))

    redo = after_one_iteration("redo")
    # K = 2: one region always holds at most half of its image, so a floor of 0.9 is active
    hinge = after_one_iteration("hinge", min_area=0.9)
    binarized = after_one_iteration("binarized", binarization=2.0)
    unweighted = after_one_iteration("unweighted", min_area=0.9, min_area_weight=0.0)
    for changed in (hinge, binarized):
        assert not same(redo, changed, "mask_net")
        assert all(same(redo, changed, net) for net in ("generator", "info_net"))
    assert all(same(redo, unweighted, net) for net in NETWORKS)


def test_d_steps_and_reuse_fakes_options(tmp_path):
    trainer = make_trainer(tmp_path / "run", make_config(d_steps=2, reuse_fakes=True))
    position = trainer.stream.position
    trainer.train_iteration()
    assert trainer.stream.position == position + 3  # batch A and two batches of reals


def test_mask_warmup_holds_f_while_the_others_train(tmp_path):
    trainer = make_trainer(tmp_path / "run", make_config(mask_warmup=2))
    start = {name: [p.detach().clone() for p in getattr(trainer.model, name).parameters()]
             for name in ("mask_net", "generator")}

    def changed(name):
        now = list(getattr(trainer.model, name).parameters())
        return any(not torch.equal(a, b) for a, b in zip(start[name], now))

    for _ in range(2):
        trainer.train_iteration()
        trainer.step += 1
    assert not changed("mask_net") and changed("generator")
    trainer.train_iteration()  # step 2: the warm-up is over
    assert changed("mask_net")


# ----------------------------------------------------------------------------- resume
def test_resume_is_exact_bit_for_bit(tmp_path):
    straight = make_trainer(tmp_path / "straight", make_config(steps=12, eval_every=4))
    straight.fit()

    first = make_trainer(tmp_path / "split", make_config(steps=6, eval_every=4))
    first.fit()
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 6
    second = make_trainer(tmp_path / "split", make_config(steps=12, eval_every=4), resume=True)
    assert second.step == 6
    second.fit()

    a, b = full_state(straight), full_state(second)
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different
    assert torch.equal(straight.rng.get_state(), second.rng.get_state())
    assert straight.stream.state_dict() == second.stream.state_dict()


def test_resume_refuses_another_configuration(tmp_path):
    make_trainer(tmp_path / "run", make_config(steps=2, eval_every=2)).fit()
    other = make_config(steps=4, eval_every=2)
    other.optim.lr_gen = 1e-3
    with pytest.raises(ValueError, match=r"optim\.lr_gen: checkpoint 0\.0001, requested 0\.001"):
        make_trainer(tmp_path / "run", other, resume=True)


def test_existing_run_needs_resume(tmp_path):
    make_trainer(tmp_path / "run", make_config(steps=2, eval_every=2)).fit()
    with pytest.raises(ValueError, match="--resume"):
        make_trainer(tmp_path / "run", make_config(steps=2, eval_every=2))


# ----------------------------------------------------------------------------- outputs
def test_metrics_jsonl_and_best_checkpoint(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=6, eval_every=2))
    summary = trainer.fit()
    records = read_metrics(out)
    assert records[0]["event"] == "start"
    evals = [r for r in records if "event" not in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    for r in evals:
        for key in ("d_loss", "g_adv", "info_loss", "accuracy", "iou", "accuracy_dataset", "iou_dataset",
                    "min_region_size", "seconds", "images_per_s", "it_per_s"):
            assert isinstance(r[key], float), key
        assert set(r["train"]) >= {"accuracy", "iou", "min_region_size"}
        assert r["n_images"] == 8
    best = max(evals, key=lambda r: r["iou"])
    assert summary["best_iou"] == pytest.approx(best["iou"])
    best_state = load_checkpoint(out / "best.pt")
    assert best_state["step"] == best["step"]
    assert best_state["best_iou"] == pytest.approx(best["iou"])
    assert load_checkpoint(out / "last.pt")["step"] == 6
    assert sorted(p.name for p in out.glob("samples_*.png")) == [
        "samples_000002.png", "samples_000004.png", "samples_000006.png"]
    assert not list(out.glob(".*.tmp"))


def _collapsing_trainer(out, monkeypatch, collapsed, **train):
    """A trainer (evaluations every 2 steps, auto_restart 0.05) whose evaluations numbered in
    ``collapsed`` (1, 2, ...; None: every one) report a collapsed region."""
    trainer = make_trainer(out, make_config(eval_every=2, auto_restart=0.05, **train))
    real_evaluate = trainer.evaluate
    calls = {"n": 0}

    def maybe_collapsed():
        scores = real_evaluate()
        calls["n"] += 1
        if collapsed is None or calls["n"] in collapsed:
            for s in scores.values():
                s["min_region_size"] = 0.0
        return scores

    monkeypatch.setattr(trainer, "evaluate", maybe_collapsed)
    return trainer


def test_auto_restart_on_collapse_is_logged(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    trainer = _collapsing_trainer(out, monkeypatch, {1}, steps=4, auto_restart_until=100)
    old_mask_net = trainer.model.mask_net
    summary = trainer.fit()
    assert summary["restarts"] == 1
    assert summary["step"] == 4 and summary["iterations"] == 6  # 2 before the restart, 4 after
    assert trainer.model.mask_net is not old_mask_net
    assert "COLLAPSE DETECTED" in capsys.readouterr().err
    events = [r for r in read_metrics(out) if r.get("event") == "auto_restart"]
    assert len(events) == 1 and events[0]["step"] == 2 and events[0]["restart"] == 1
    assert load_checkpoint(out / "last.pt")["restarts"] == 1


def test_max_iterations_counts_the_iterations_before_an_auto_restart(tmp_path, monkeypatch):
    # steps=4 per attempt; a collapse at step 2; the cap of 5 ends the second attempt at step 3
    out = tmp_path / "run"
    trainer = _collapsing_trainer(out, monkeypatch, {1}, steps=4, auto_restart_until=100, max_iterations=5)
    summary = trainer.fit()
    assert summary["restarts"] == 1 and summary["iterations"] == 5 and summary["step"] == 3
    state = load_checkpoint(out / "last.pt")
    assert state["iterations"] == 5 and state["step"] == 3
    evals = [r for r in read_metrics(out) if "event" not in r]
    assert evals[-1]["iteration"] == 5  # a last evaluation at the cap
    # resumed with the cap reached: nothing more runs
    again = make_trainer(out, trainer.config, resume=True).fit()
    assert again["iterations"] == 5 and again["step"] == 3


def test_no_auto_restart_at_the_iteration_cap(tmp_path, monkeypatch):
    # a collapse seen at the cap's evaluation ends the run; a restart would leave fresh networks
    out = tmp_path / "run"
    trainer = _collapsing_trainer(out, monkeypatch, {2}, steps=8, auto_restart_until=100, max_iterations=4)
    summary = trainer.fit()
    assert summary["restarts"] == 0 and summary["iterations"] == 4 and summary["step"] == 4
    assert load_checkpoint(out / "last.pt")["step"] == 4


def test_no_restart_after_auto_restart_until(tmp_path, monkeypatch):
    trainer = _collapsing_trainer(tmp_path / "run", monkeypatch, None, steps=4, auto_restart_until=1)
    assert trainer.fit()["restarts"] == 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=10, eval_every=4, log_every=1))
    original = trainer.train_iteration

    def poisoned(*args, **kwargs):
        if trainer.step == 4:  # the 5th iteration starts from broken weights
            with torch.no_grad():
                next(trainer.model.mask_net.parameters()).fill_(float("nan"))
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_iteration", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 5: .*loss.* is nan.*last good checkpoint"):
        trainer.fit()
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for net in state["model"].values() for v in net.values()
               if v.is_floating_point())
    assert read_metrics(out)[-1]["event"] == "diverged"


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=4, eval_every=2, log_every=10))
    original = trainer.train_iteration

    def poisoned(*args, **kwargs):
        losses = original(*args, **kwargs)
        if trainer.step == 3:
            with torch.no_grad():
                next(trainer.model.discriminator.parameters()).fill_(float("inf"))
            return torch.zeros_like(losses)  # losses look fine: the weight check must catch it
        return losses

    monkeypatch.setattr(trainer, "train_iteration", poisoned)
    with pytest.raises(TrainingDiverged, match="non-finite weights in discriminator"):
        trainer.fit()
    assert load_checkpoint(out / "last.pt")["step"] == 2


def test_tensorboard_is_optional(tmp_path):
    messages = []
    trainer = make_trainer(tmp_path / "run", make_config(steps=2, eval_every=2), tensorboard=True,
                           log=messages.append)
    trainer.fit()
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert any("TensorBoard is not installed" in m for m in messages)
    else:
        assert (tmp_path / "run" / "tensorboard").is_dir()


def test_time_limit_stops_after_a_last_evaluation_and_checkpoint(tmp_path, monkeypatch):
    """``train.time_limit_minutes``: the run ends at the first logging step past the limit."""
    import redo_lib.training.trainer as trainer_module

    clock = {"t": 0.0}

    def fake_clock():
        clock["t"] += 7.0  # every reading of the clock: 7 seconds later
        return clock["t"]

    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=50, eval_every=10, log_every=2, time_limit_minutes=1.0))
    monkeypatch.setattr(trainer_module.time, "perf_counter", fake_clock)
    summary = trainer.fit()
    assert 0 < summary["step"] < 50 and summary["step"] % 2 == 0
    assert load_checkpoint(out / "last.pt")["step"] == summary["step"]
    evals = [r for r in read_metrics(out) if "event" not in r]
    assert evals[-1]["step"] == summary["step"] and evals[-1]["seconds"] >= 60.0
    # without a limit the same run goes all the way
    plain = make_trainer(tmp_path / "plain", make_config(steps=8, eval_every=4, log_every=2)).fit()
    assert plain["step"] == 8


def test_images_per_iteration_counts_the_generator_batch_and_one_batch_of_reals_per_d_step(tmp_path):
    trainer = make_trainer(tmp_path / "a", make_config(batch_size=4, d_steps=3))
    assert trainer.images_per_iteration == 4 * (1 + 3)
