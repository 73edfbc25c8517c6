r"""The training loop of ReDO (official ``train.py`` semantics).

One iteration:

1. **Generator step** on a batch A: masks ``F(A)``, codes :math:`z \sim \mathcal{N}(0, I)`
   of shape (B, K, nz), every region redrawn, the B*K composites judged by D;
   loss :math:`-\mathbb{E}[D(\text{fakes})] + \lambda_z \mathcal{L}_{info}(\delta(\sum_k G_k), z)`
   updates F, every G_k and delta. D's parameters are frozen (``requires_grad=False``)
   during this step: the official code computes D's weight gradients and throws them
   away; not computing them gives the same updates and saves ~9% of the work.
2. **D step**: the fakes are regenerated from A with the *same* z under ``no_grad`` (after
   the generator update, as the official code does), and D is updated with the hinge
   loss on a second batch of reals against them (``d_steps`` > 1: more D updates on fresh
   reals against the same fakes).

Every network stays in train mode during training, so each forward is one spectral-norm
power iteration, exactly as many as in the official loop (G step: F, G, D once; D step:
F, G once, D on reals and on fakes). Evaluation switches to eval mode.

Every ``eval_every`` steps (and at the last step) the validation split and a fixed subset
of the training split are scored in float32 (both protocols; never under autocast, so
that ``best.pt``, the collapse decision and ``metrics.jsonl`` agree with ``redo
evaluate``), ``best.pt`` (the networks only, the ``redo export`` format) is written when
the validation IoU improves (official protocol), then ``last.pt`` (the full resume state),
a line is appended to ``metrics.jsonl`` and a sample grid ``samples_%06d.png`` is saved.
Collapse detection restarts everything from scratch (official ``--autoRestart``).

Backups (``train.backup_dir``, e.g. a Google Drive folder while ``out_dir`` is the local
disk of a Colab session): ``best.pt``, ``metrics.jsonl`` and the newest sample grid go there
at every evaluation, a copy of ``last.pt`` every ``train.backup_every`` evaluations and
when the run stops (end, time limit, a failed save, divergence, interruption); a resume
finds ``backup_dir/last.pt`` when ``out_dir`` has none. A failed write stops the run with
:class:`~redo_lib.training.checkpoint.CheckpointSaveError` (one message: file, space
needed, free space, what to do); the previous files stay intact.

On CUDA the run sets ``cudnn.benchmark`` and TF32 (``train.tf32``) for its own duration
only (restored when :meth:`Trainer.fit` returns; logged in the ``start`` event), uses
fused Adam (same update, fewer kernel launches and no host sync) and, with a gradient
scaler (float16), logs the scale and the skipped updates in ``metrics.jsonl``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.utils.data import Dataset

from ..config import ReDOConfig
from ..model import ReDO
from ..utils import amp_choice, pick_device, seed_everything
from .checkpoint import (
    FORMAT,
    NETWORKS,
    VERSION,
    CheckpointSaveError,
    LoadedCheckpoint,
    _atomic_write,
    atomic_copy,
    atomic_save,
    capture_rng_state,
    check_resumable,
    config_of,
    exported_state,
    find_resume_checkpoint,
    load_checkpoint,
    model_state,
    remove_stale_temporaries,
    restore_rng_state,
)
from .data import BatchStream, data_pipeline, iterate_batches
from .distributed import (
    DistInfo,
    all_gather_object,
    any_flag,
    barrier,
    broadcast_object,
    disable_ddp_graph_splitting,
    wrap_ddp,
)
from .evaluation import evaluate_model, has_masks
from .samples import fixed_codes, sample_grid, save_grid
from .steps import DiscriminatorStep, GeneratorStep, make_fakes

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "RunExistsError",
    "CheckpointSaveError",
    "resolve_device",
    "samples_path",
    "check_train_config",
    "use_fused_adam",
    "backend_flags",
    "run_backend_flags",
    "LOSS_NAMES",
]

LOSS_NAMES = ("d_loss", "g_adv", "info_loss")
_LOSS_DESCRIPTIONS = {
    "d_loss": "the discriminator's hinge loss (d_loss)",
    "g_adv": "the generator's adversarial loss (g_adv)",
    "info_loss": "the information-conservation loss (info_loss)",
}
N_SAMPLE_IMAGES = 5
N_SAMPLE_Z = 4


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stopped without saving the bad weights."""


class RunExistsError(ValueError):
    """The run folder already holds a checkpoint and ``resume`` was not asked for."""


def check_train_config(config: ReDOConfig) -> None:
    """Validate the options of the training loop (``ReDOConfig.validate`` checks the rest)."""
    t = config.train
    positive = ("batch_size", "eval_every", "d_steps", "log_every", "eval_batch_size", "backup_every")
    for name in positive:
        if getattr(t, name) < 1:
            raise ValueError(f"train.{name} must be at least 1, got {getattr(t, name)}")
    for name in ("steps", "max_eval_images", "num_workers", "train_eval_images", "auto_restart_until",
                 "mask_warmup", "max_iterations"):
        if getattr(t, name) < 0:
            raise ValueError(f"train.{name} must be >= 0, got {getattr(t, name)}")
    if not 0 <= t.auto_restart < 0.5:
        raise ValueError(f"train.auto_restart must be in [0, 0.5), got {t.auto_restart}")
    if not isinstance(t.compile_backend, str) or not t.compile_backend.strip():
        raise ValueError(f"train.compile_backend must be a non-empty torch.compile backend name "
                         f"(e.g. 'inductor', 'aot_eager', 'eager'), got {t.compile_backend!r}")
    o = config.optim
    for name in ("lr_mask", "lr_gen", "lr_disc", "lr_info", "weight_decay_mask"):
        if getattr(o, name) < 0:
            raise ValueError(f"optim.{name} must be >= 0, got {getattr(o, name)}")
    if not (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1):
        raise ValueError(f"optim.beta1 / beta2 must be in [0, 1), got {o.beta1}, {o.beta2}")


def resolve_device(name: str, dist: Optional[DistInfo] = None) -> torch.device:
    """:func:`redo_lib.utils.pick_device`, on the process's own GPU under DDP."""
    dist = dist or DistInfo()
    return pick_device(name, dist.local_rank if dist.enabled else None)


def samples_path(out: Path, restarts: int, step: int) -> Path:
    """The sample grid saved at ``step`` of a run in ``out`` (``_r<N>`` after the N-th restart)."""
    suffix = f"_r{restarts}" if restarts else ""
    return Path(out) / f"samples{suffix}_{step:06d}.png"


def _atomic_text(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    _atomic_write(path, lambda handle: handle.write(data), needed=len(data))


def _end_with_newline(path: Path) -> None:
    """Terminate a cut last line, so that the next record starts a line of its own."""
    try:
        with open(path, "rb+") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    except FileNotFoundError:
        pass


def _match_adam_implementation(optimizer: torch.optim.Optimizer, fused: bool) -> None:
    """After ``load_state_dict``: this device's Adam kernel, whatever the writer's was.

    ``load_state_dict`` takes the stored groups' ``fused`` / ``foreach`` flags, so a
    checkpoint of a CPU run would turn fused Adam off on a GPU (and a GPU run's would ask
    for it on the CPU). The update is the same; ``step`` lives on the parameter's device
    for the fused kernel and on the CPU otherwise.
    """
    for group in optimizer.param_groups:
        group["fused"] = True if fused else None
        if fused:
            group["foreach"] = None
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and "step" in state and torch.is_tensor(state["step"]):
                state["step"] = (state["step"].to(device=p.device, dtype=torch.float32) if fused
                                 else state["step"].to(device="cpu", dtype=torch.float32))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def use_fused_adam(device: Any) -> bool:
    """Whether the optimisers use ``torch.optim.Adam(fused=True)``: on CUDA only.

    The fused kernel computes the same Adam update (same betas, same coupled weight decay)
    in one launch per parameter group and, with a gradient scaler, without a host sync.
    On the CPU the default implementation is kept (the tests' bit-exact references).
    """
    return torch.device(device).type == "cuda"


def _new_precision_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision")  # torch >= 2.9


def backend_flags() -> Dict[str, Any]:
    """The CUDA backend flags a run sets: ``cudnn.benchmark`` and the float32 precisions."""
    if _new_precision_api():
        return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
                "conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision}
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32)}


def _set_backend_flags(flags: Dict[str, Any]) -> None:
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    if "matmul_fp32_precision" in flags:
        torch.backends.cuda.matmul.fp32_precision = flags["matmul_fp32_precision"]
        torch.backends.cudnn.conv.fp32_precision = flags["conv_fp32_precision"]
    else:
        torch.backends.cuda.matmul.allow_tf32 = flags["matmul_allow_tf32"]
        torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]


@contextlib.contextmanager
def run_backend_flags(device: torch.device, tf32: bool):
    """Set the run's CUDA flags (``cudnn.benchmark`` on, TF32 if ``tf32``); restore them after.

    Yields the flags in force (None off CUDA, where nothing is changed). The flags are
    process-wide: scoping them keeps an A100 notebook's later "float32" work float32.
    """
    if torch.device(device).type != "cuda":
        yield None
        return
    saved = backend_flags()
    precision = "tf32" if tf32 else "ieee"
    wanted = {"cudnn_benchmark": True}
    if "matmul_fp32_precision" in saved:
        wanted.update(matmul_fp32_precision=precision, conv_fp32_precision=precision)
    else:
        wanted.update(matmul_allow_tf32=tf32, cudnn_allow_tf32=tf32)
    try:
        _set_backend_flags(wanted)
        yield backend_flags()
    finally:
        _set_backend_flags(saved)


class Trainer:
    """Trains one :class:`~redo_lib.ReDO` run in the folder ``out_dir``.

    >>> trainer = Trainer(config, "runs/synthetic", train_set, val_set)
    >>> summary = trainer.fit()        # up to config.train.steps iterations in total

    ``resume=True`` continues from ``out_dir/last.pt``, or from ``train.backup_dir/last.pt``
    when ``out_dir`` has none (exactly: same weights bit for bit as an uninterrupted run on
    the CPU); the stored configuration must match except for the options of
    :data:`~redo_lib.training.checkpoint.RESUMABLE_OPTIONS`. ``checkpoint``: that file
    already read (``redo train --resume`` reads it once, for the configuration and here).
    ``freeze_d_in_g_step=False`` computes (and discards) D's gradients in the generator
    step like the official code (benchmarks only: same updates, more work).
    """

    def __init__(self, config: ReDOConfig, out_dir, train_set: Dataset, val_set: Optional[Dataset] = None, *,
                 resume: bool = False, progress: bool = True, tensorboard: bool = False,
                 dist: Optional[DistInfo] = None, log: Callable[[str], None] = _stderr,
                 freeze_d_in_g_step: bool = True, write_files: bool = True,
                 checkpoint: Optional[LoadedCheckpoint] = None) -> None:
        config.validate()
        check_train_config(config)
        self.config = config
        self.tc = config.train
        self.out = Path(out_dir)
        self.dist = dist or DistInfo()
        self.log = log if self.dist.is_main else (lambda message: None)
        self.progress = progress
        self.freeze_d = freeze_d_in_g_step
        self.write_files = write_files and self.dist.is_main
        self.train_set = train_set
        self.val_set = val_set if (val_set is not None and has_masks(val_set)) else None
        if val_set is not None and self.val_set is None:
            self.log("note: the validation split has no masks; it is not scored")

        self.device = resolve_device(self.tc.device, self.dist)
        self.amp_dtype: Optional[torch.dtype] = None
        use_scaler = False
        if self.tc.amp:
            if self.device.type == "cuda":
                self.amp_dtype, use_scaler = amp_choice(self.device)  # bf16 only on capability >= 8.0
            else:
                self.log("note: --amp is ignored on the CPU (training in float32)")
        self.memory_format = torch.channels_last if self.tc.channels_last else torch.contiguous_format

        # State that evolves; restored by load().
        self.step = 0  # iteration counter of the current attempt (reset by auto-restart)
        self.iterations = 0  # every iteration run, across restarts and resumes
        self.restarts = 0
        self.best_iou: Optional[float] = None
        self.best_step: Optional[int] = None
        self.elapsed = 0.0  # wall-clock seconds, across resumes
        self.images_seen = 0
        self.last_saved_step: Optional[int] = None
        self.backup = Path(self.tc.backup_dir) if self.tc.backup_dir else None
        self._saved_iteration: Optional[int] = None  # the iteration of out/last.pt (unique across restarts)
        self._backup_iteration: Optional[int] = None  # the iteration of backup_dir/last.pt, if known
        self._evaluations_since_backup = 0
        self._metrics_backup_size: Optional[int] = None
        self.resumed_from: Optional[Path] = None

        seed_everything(self.tc.seed)
        # z and the region index of the one-region variant: own generator, one per process.
        self.rng = torch.Generator().manual_seed(self.tc.seed * 1000 + 17 + self.dist.rank)
        self.stream = BatchStream(len(train_set), self.tc.batch_size, self.tc.seed,
                                  rank=self.dist.rank, world_size=self.dist.world_size)
        # loader workers, the in-memory image caches (estimate logged), mask-free training reads
        self.num_workers, self.fetcher = data_pipeline(
            self.tc, train_set, self.val_set, self.stream, self.device, world_size=self.dist.world_size,
            log=self.log, progress=progress and self.dist.is_main)
        self._use_scaler = use_scaler
        self._pbar = None
        self._t0 = time.perf_counter()
        if self.tc.compile and disable_ddp_graph_splitting(self.dist):  # before _build compiles
            self.log("note: --compile under DDP: torch._dynamo.config.optimize_ddp = False "
                     "(no graph splits at DDP's gradient-bucket boundaries)")
        self._build()

        self._pending: List[tuple] = []
        self._loss_sum = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)
        self._loss_count = 0
        self._last_losses: Optional[torch.Tensor] = None
        self._train_eval_indices = self._pick_train_eval()
        self._samples = self._pick_samples()
        self._z_fixed = fixed_codes(N_SAMPLE_Z, config.model.nz, self.tc.seed)
        self._writer = None

        if self.write_files:
            for folder in (self.out, self.backup):
                stale = remove_stale_temporaries(folder) if folder is not None else []
                if stale:
                    self.log(f"note: removed {len(stale)} temporary file(s) of an interrupted save in "
                             f"{folder}: {', '.join(p.name for p in stale)}")
        found = ((checkpoint.path, checkpoint.from_backup) if checkpoint is not None
                 else find_resume_checkpoint(self.out, self.tc.backup_dir))
        if not resume and found is not None:
            where = "--out" if not found[1] else "--backup-dir"
            raise RunExistsError(
                f"{found[0].parent} already holds a run (last.pt); pass --resume to continue it "
                f"or choose another {where}"
            )
        if resume and found is not None:
            self.load(found[0], None if checkpoint is None else checkpoint.state, from_backup=found[1])
        elif resume:
            where = f"{self.out}" + (f" or {self.backup}" if self.backup is not None else "")
            self.log(f"note: no checkpoint in {where}: starting a new run")
        self._resumed = resume and found is not None
        if not self._resumed and self.write_files and (self.out / "metrics.jsonl").exists():
            (self.out / "metrics.jsonl").unlink()  # from an attempt that never saved a checkpoint
        if self._resumed and self.write_files:
            _end_with_newline(self.out / "metrics.jsonl")  # a line cut by a full disk or a kill
        if tensorboard and self.write_files:
            self._writer = self._open_tensorboard()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        """Fresh networks, optimisers and step modules (start and auto-restart)."""
        cfg, o = self.config, self.config.optim
        model = ReDO(cfg.model).to(self.device)
        if self.tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        self.model = model
        self.use_info = cfg.loss.lambda_z > 0
        # Adam (Kingma & Ba) with the official betas (0, 0.9); coupled L2 weight decay on F only
        adam = dict(betas=(o.beta1, o.beta2), **({"fused": True} if use_fused_adam(self.device) else {}))
        self.optimizers: Dict[str, torch.optim.Optimizer] = {
            "mask_net": torch.optim.Adam(model.mask_net.parameters(), lr=o.lr_mask,
                                         weight_decay=o.weight_decay_mask, **adam),
            "generator": torch.optim.Adam(model.generator.parameters(), lr=o.lr_gen, **adam),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=o.lr_disc, **adam),
            "info_net": torch.optim.Adam(model.info_net.parameters(), lr=o.lr_info, **adam),
        }
        self.g_optimizers = [self.optimizers["mask_net"], self.optimizers["generator"]]
        if self.use_info:
            self.g_optimizers.append(self.optimizers["info_net"])
        if self.tc.compile:
            for name in NETWORKS:
                getattr(model, name).compile(backend=self.tc.compile_backend)
        g_step = GeneratorStep(model.mask_net, model.generator, model.info_net if self.use_info else None,
                               model.discriminator, cfg.model.n_regions, cfg.model.nz, cfg.loss.info_loss,
                               min_area=cfg.loss.min_area, min_area_weight=cfg.loss.min_area_weight,
                               binarization=cfg.loss.binarization)
        self.use_additions = cfg.loss.min_area > 0 or cfg.loss.binarization > 0
        d_step = DiscriminatorStep(model.discriminator)
        one_region = cfg.loss.regions == "one"
        self.g_step = wrap_ddp(g_step, self.dist, self.device, find_unused_parameters=one_region)
        self.d_step = wrap_ddp(d_step, self.dist, self.device)
        self.scalers = {name: torch.amp.GradScaler("cuda", enabled=self._use_scaler) for name in ("g", "d")}
        self._skipped = {name: torch.zeros((), dtype=torch.int64, device=self.device) for name in self.scalers}

    def _pick_train_eval(self) -> Optional[List[int]]:
        n = self.tc.train_eval_images
        if n <= 0 or not has_masks(self.train_set):
            return None
        total = len(self.train_set)
        if n >= total:
            return list(range(total))
        g = torch.Generator().manual_seed(self.tc.seed + 4242)
        return sorted(torch.randperm(total, generator=g)[:n].tolist())

    def _pick_samples(self):
        source = self.val_set if self.val_set is not None else self.train_set
        n = min(N_SAMPLE_IMAGES, len(source))
        batch = next(iterate_batches(source, n, max_items=n))
        return batch["image"], batch.get("mask")

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("note: TensorBoard is not installed (pip install tensorboard); --tensorboard skipped")
            return None
        return SummaryWriter(log_dir=str(self.out / "tensorboard"))

    # ------------------------------------------------------------------ one iteration
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _next_images(self) -> torch.Tensor:
        images = self.fetcher.next()
        if self.tc.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    @property
    def images_per_iteration(self) -> int:
        """Real images one iteration reads, over all processes: the generator step's batch and
        one batch of reals per D step (the trainer's ``images_per_s`` counts these)."""
        return self.tc.batch_size * (1 + self.tc.d_steps) * self.dist.world_size

    def train_iteration(self, images: Optional[torch.Tensor] = None,
                        reals: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """One generator step and ``d_steps`` D steps; returns the (3,) detached losses.

        Batches come from the training stream unless given (benchmarks).
        """
        cfg = self.config
        if images is None:
            images = self._next_images()
        if reals is None:
            reals = [self._next_images() for _ in range(self.tc.d_steps)]
        b, k, nz = images.shape[0], cfg.model.n_regions, cfg.model.nz
        z = torch.randn(b, k, nz, generator=self.rng).to(self.device, non_blocking=True)
        region: Optional[int] = None
        if cfg.loss.regions == "one":
            region = int(torch.randint(k, (1,), generator=self.rng))
        discriminator = self.model.discriminator

        # (1) generator step: F, G_k, delta  (record_function: labels for torch.profiler)
        if self.freeze_d:
            discriminator.requires_grad_(False)
        try:
            with torch.profiler.record_function("redo.generator_forward"), self._autocast():
                g_adv, info, fakes, additions = self.g_step(images, z, region)
            loss = g_adv + cfg.loss.lambda_z * info if self.use_info else g_adv
            if self.use_additions:  # terms beyond ReDO (loss.min_area, loss.binarization), off by default
                loss = loss + additions
            for opt in self.g_optimizers:
                opt.zero_grad(set_to_none=True)
            scaler = self.scalers["g"]
            with torch.profiler.record_function("redo.generator_backward"):
                scaler.scale(loss).backward()
            frozen = self.optimizers["mask_net"] if self.step < self.tc.mask_warmup else None
            for opt in self.g_optimizers:
                if opt is not frozen:  # F waits out train.mask_warmup iterations
                    scaler.step(opt)
            self._update_scaler("g")
        finally:
            if self.freeze_d:
                discriminator.requires_grad_(True)

        # (2) D step: fakes regenerated from A with the same z (official), reals from new batches
        if self.tc.reuse_fakes:
            fakes = fakes.detach()
        else:
            with torch.no_grad(), torch.profiler.record_function("redo.regenerate_fakes"), self._autocast():
                fakes = make_fakes(self.model, images, z, region)
        del loss
        d_opt, scaler = self.optimizers["discriminator"], self.scalers["d"]
        d_total = None
        for real in reals:
            d_opt.zero_grad(set_to_none=True)
            with torch.profiler.record_function("redo.discriminator_forward"), self._autocast():
                d_loss = self.d_step(real, fakes)
            with torch.profiler.record_function("redo.discriminator_backward"):
                scaler.scale(d_loss).backward()
            scaler.step(d_opt)
            self._update_scaler("d")
            d_total = d_loss.detach() if d_total is None else d_total + d_loss.detach()
        d_mean = d_total / len(reals)
        return torch.stack([d_mean, g_adv.detach(), info.detach()])

    def _update_scaler(self, name: str) -> None:
        """``GradScaler.update`` counting the skipped updates (non-finite gradients) on the device.

        A skipped update is the one after which the scale shrank (``backoff_factor`` < 1);
        the comparison stays on the device (no host sync with fused Adam).
        """
        scaler = self.scalers[name]
        if not scaler.is_enabled():
            scaler.update()
            return
        before = scaler._scale.clone()  # noqa: SLF001 - set by scale(); no public sync-free getter
        scaler.update()
        self._skipped[name] += (scaler._scale < before).to(torch.int64)  # noqa: SLF001

    def _take_scaler_record(self) -> Dict[str, Any]:
        """``amp_scale`` and ``skipped_steps`` (since the last evaluation) per scaler; {} without one."""
        if not any(s.is_enabled() for s in self.scalers.values()):
            return {}
        record = {"amp_scale": {name: float(s.get_scale()) for name, s in self.scalers.items()},
                  "skipped_steps": {name: int(count) for name, count in self._skipped.items()}}
        for count in self._skipped.values():
            count.zero_()
        return record

    # ------------------------------------------------------------------ loss bookkeeping
    def _flush_losses(self) -> None:
        """Check the pending losses for NaN / inf (one sync) and add them to the averages."""
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        values = torch.stack([v for _, v in self._pending]).double().cpu()
        self._pending.clear()
        finite = torch.isfinite(values)
        if any_flag(not bool(finite.all()), self.dist, self.device):
            if bool(finite.all()):
                raise TrainingDiverged(self._diverged_message(None, None, None))
            row, col = [int(i) for i in (~finite).nonzero()[0]]
            raise TrainingDiverged(self._diverged_message(steps[row], LOSS_NAMES[col], float(values[row, col])))
        self._loss_sum += values.sum(0)
        self._loss_count += values.shape[0]
        self._last_losses = values[-1]

    def _diverged_message(self, step, name, value) -> str:
        if step is None:
            head = "training diverged on another process (a loss became NaN or infinite)"
        else:
            head = f"training diverged at step {step}: {_LOSS_DESCRIPTIONS[name]} is {value}"
        last = self.out / "last.pt"
        if self.last_saved_step is not None or last.is_file():
            tail = f"stopped without saving; the last good checkpoint is kept: {last}"
            if self.last_saved_step is not None:
                tail += f" (step {self.last_saved_step})"
        else:
            tail = "stopped; no checkpoint had been written yet"
        return f"{head}; {tail}. Try lower learning rates or another --seed."

    def _take_loss_means(self) -> Dict[str, Optional[float]]:
        if self._loss_count == 0:
            return {name: None for name in LOSS_NAMES}
        means = (self._loss_sum / self._loss_count).tolist()
        self._loss_sum.zero_()
        self._loss_count = 0
        return dict(zip(LOSS_NAMES, means))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> Dict[str, Optional[Dict[str, float]]]:
        """Validation and train-subset scores (``None`` where there is no ground truth)."""
        # float32 always (no autocast): masks thresholded at 0.5 must match `redo evaluate`
        kwargs = dict(batch_size=self.tc.eval_batch_size, device=self.device,
                      num_workers=self.num_workers, autocast_dtype=None)
        out: Dict[str, Optional[Dict[str, float]]] = {"val": None, "train": None}
        if self.val_set is not None:
            out["val"] = evaluate_model(self.model, self.val_set, max_images=self.tc.max_eval_images, **kwargs)
        if self._train_eval_indices is not None:
            out["train"] = evaluate_model(self.model, self.train_set, indices=self._train_eval_indices, **kwargs)
        return out

    def _write_samples(self) -> None:
        images, truth = self._samples
        path = samples_path(self.out, self.restarts, self.step)
        self.model.eval()
        try:
            with torch.no_grad():
                grid = sample_grid(self.model, images.to(self.device),
                                   None if truth is None else truth.to(self.device), self._z_fixed.to(self.device))
            save_grid(grid, path)
        except Exception as error:  # a figure must never stop a training run
            self.log(f"warning: could not write {path.name}: {type(error).__name__}: {error}")
        finally:
            self.model.train()

    def _append_metrics(self, record: Dict[str, Any]) -> None:
        if not self.write_files:
            return
        line = json.dumps(record, allow_nan=True) + "\n"
        path = self.out / "metrics.jsonl"
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
        except OSError as error:  # a full disk: the same one-line message as a checkpoint
            free = shutil.disk_usage(self.out).free if self.out.is_dir() else None
            raise CheckpointSaveError(path, len(line.encode("utf-8")), free, error) from error

    def _collapsed(self, scores) -> bool:
        threshold = self.tc.auto_restart
        if threshold <= 0 or self.step > self.tc.auto_restart_until:
            return False
        sizes = [s["min_region_size"] for s in (scores["val"], scores["train"]) if s is not None]
        return bool(sizes) and all(size < threshold for size in sizes)

    def _evaluate_and_save(self, scheduled: bool, window: Dict[str, float]) -> bool:
        """Score, log, check for collapse, checkpoint. Returns True after an auto-restart."""
        record: Dict[str, Any] = {}
        restart = False
        losses = self._take_loss_means()
        if self.dist.is_main:
            eval_start = time.perf_counter()
            scores = self.evaluate()
            if self.write_files:
                self._write_samples()
            val, train = scores["val"], scores["train"]
            main = val if val is not None else train
            record = {"step": self.step, "iteration": self.iterations, "restart": self.restarts, **losses}
            for key in ("accuracy", "iou", "accuracy_dataset", "iou_dataset", "min_region_size", "n_images"):
                record[key] = None if val is None else val[key]
            record["train"] = None if train is None else {
                key: train[key] for key in ("accuracy", "iou", "accuracy_dataset", "iou_dataset",
                                            "min_region_size", "n_images")}
            record["seconds"] = round(self.elapsed + (time.perf_counter() - self._t0), 3)
            record["it_per_s"] = window.get("it_per_s")
            record["images_per_s"] = window.get("images_per_s")
            record["eval_seconds"] = round(time.perf_counter() - eval_start, 3)
            record.update(self._take_scaler_record())
            restart = scheduled and self._collapsed(scores)
            improved = False
            if not restart and main is not None and (self.best_iou is None or main["iou"] > self.best_iou):
                self.best_iou, self.best_step, improved = main["iou"], self.step, True
            record["best_iou"] = self.best_iou
            record["is_best"] = improved
            self._log_scores(record, scores)
        restart = broadcast_object(restart, self.dist)
        if restart:
            self._append_metrics(record)
            self._auto_restart(record)
            return True
        self._check_finite_weights()
        self._save(best=bool(record.get("is_best")))
        if self.dist.is_main:
            self._collective_write(lambda: self._append_metrics(record))
            self._tensorboard_scores(record)
        else:
            self._collective_write(lambda: None)
        self._evaluations_since_backup += 1
        due = self._evaluations_since_backup >= self.tc.backup_every
        self._collective_write(lambda: self._backup(last=due))
        if due:
            self._evaluations_since_backup = 0
        return False

    def _log_scores(self, record, scores) -> None:
        parts = [f"step {self.step}"]
        if self.restarts:
            parts.append(f"restart {self.restarts}")
        if record.get("d_loss") is not None:
            parts.append(f"losses d {record['d_loss']:.3f} g {record['g_adv']:.3f} info {record['info_loss']:.3f}")
        for name in ("val", "train"):
            s = scores[name]
            if s is not None:
                parts.append(f"{name} acc {s['accuracy']:.4f} IoU {s['iou']:.4f} "
                             f"(data-set polarity {s['accuracy_dataset']:.4f} / {s['iou_dataset']:.4f}) "
                             f"min region {s['min_region_size']:.3f}")
        if record.get("is_best"):
            parts.append("new best")
        if self._pbar is not None:
            self._pbar.write(" | ".join(parts), file=sys.stderr)
        else:
            self.log(" | ".join(parts))

    def _tensorboard_scores(self, record) -> None:
        if self._writer is None:
            return
        x = self.iterations
        for key in ("accuracy", "iou", "accuracy_dataset", "iou_dataset", "min_region_size"):
            if record.get(key) is not None:
                self._writer.add_scalar(f"val/{key}", record[key], x)
            if record.get("train") and record["train"].get(key) is not None:
                self._writer.add_scalar(f"train/{key}", record["train"][key], x)
        self._writer.flush()

    def _auto_restart(self, record) -> None:
        before = self.step
        self.restarts += 1
        message = (
            f"\n{'!' * 78}\n!!! COLLAPSE DETECTED at step {before}: the smaller region covers "
            f"{record.get('min_region_size')} (val) / "
            f"{(record.get('train') or {}).get('min_region_size')} (train) of the image, below "
            f"auto_restart={self.tc.auto_restart}.\n!!! AUTO-RESTART #{self.restarts}: re-initialising all "
            f"networks and optimisers, step counter back to 0.\n{'!' * 78}"
        )
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)
        self._append_metrics({"event": "auto_restart", "step": before, "iteration": self.iterations,
                              "restart": self.restarts, "min_region_size": record.get("min_region_size"),
                              "train_min_region_size": (record.get("train") or {}).get("min_region_size"),
                              "threshold": self.tc.auto_restart})
        if self.tc.compile:
            # Spectral norm's parametrisations give each new network a class of its own, so the
            # fresh networks never match the old compiled graphs: drop those graphs, or every
            # restart would add a set until dynamo's recompile_limit leaves the networks uncompiled.
            torch.compiler.reset()
        self._build()
        self.step = 0
        self._save()  # the fresh start, so that a resume continues it
        if self._pbar is not None:
            self._pbar.reset(total=self._attempt_total())

    # ------------------------------------------------------------------ checkpoints
    def _check_finite_weights(self) -> None:
        bad = [name for name in NETWORKS
               if not all(bool(torch.isfinite(p).all()) for p in getattr(self.model, name).parameters())]
        if any_flag(bool(bad), self.dist, self.device):
            raise TrainingDiverged(
                f"training diverged before step {self.step}: non-finite weights in {', '.join(bad) or 'a process'}; "
                f"stopped without saving; the last good checkpoint is kept: {self.out / 'last.pt'}"
            )

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue the run exactly (rank 0's view + every rank's RNG)."""
        rng = all_gather_object(capture_rng_state({"trainer": self.rng}), self.dist)
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_dict(),
            "model": model_state(self.model),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scalers": {name: s.state_dict() for name, s in self.scalers.items()},
            "step": self.step,
            "iterations": self.iterations,
            "restarts": self.restarts,
            "best_iou": self.best_iou,
            "best_step": self.best_step,
            "elapsed_seconds": self.elapsed + (time.perf_counter() - self._t0),
            "images_seen": self.images_seen,
            "data": self.stream.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
            "torch_version": str(torch.__version__),
        }

    def _collective_write(self, write: Callable[[], None]) -> None:
        """Run ``write`` (on the main process); a failed save stops every process.

        A :class:`CheckpointSaveError` of the main process is raised on every process (the
        others would otherwise wait for it at the next collective).
        """
        error: Optional[CheckpointSaveError] = None
        if self.write_files:
            try:
                write()
            except CheckpointSaveError as failure:
                error = failure
        if any_flag(error is not None, self.dist, self.device):
            raise broadcast_object(error, self.dist)  # the main process's error, on every process

    def _save(self, best: bool = False) -> None:
        """``best.pt`` (networks only, when ``best``: in ``out`` and ``backup_dir``), then ``last.pt``.

        ``best.pt`` comes first: after a crash between the two, the resumed run redoes the
        step and rewrites it, whereas the other order would keep a ``last.pt`` whose
        ``best_iou`` names a model no file holds.
        """
        state = self.state_dict()  # every rank takes part (RNG gather)

        def write() -> None:
            if best:
                slim = exported_state(state)
                for folder in (self.out, self.backup):
                    if folder is not None:
                        atomic_save(slim, folder / "best.pt")
            atomic_save(state, self.out / "last.pt")
            self.last_saved_step, self._saved_iteration = self.step, self.iterations

        try:
            self._collective_write(write)
        finally:
            del state

    def _backup(self, last: bool) -> None:
        """Copy metrics.jsonl, the newest sample grid and (``last``) last.pt to ``backup_dir``."""
        if self.backup is None:
            return
        metrics = self.out / "metrics.jsonl"
        if metrics.is_file() and metrics.stat().st_size != self._metrics_backup_size:
            atomic_copy(metrics, self.backup / metrics.name)
            self._metrics_backup_size = metrics.stat().st_size
        grid = samples_path(self.out, self.restarts, self.step)
        for src in (self.out / "best.pt", grid):  # best.pt: written there directly, unless added later
            if src.is_file() and not (self.backup / src.name).exists():
                atomic_copy(src, self.backup / src.name)
        if last:
            self._backup_last()

    def _backup_last(self) -> None:
        """Copy ``out/last.pt`` to ``backup_dir`` unless the copy there is already of its step."""
        source = self.out / "last.pt"
        if self.backup is None or self._saved_iteration is None or not source.is_file():
            return
        if self._backup_iteration != self._saved_iteration or not (self.backup / "last.pt").is_file():
            atomic_copy(source, self.backup / "last.pt")
            self._backup_iteration = self._saved_iteration

    def _final_backup(self, failed: bool) -> None:
        """At the end of :meth:`fit`: ``last.pt`` (and metrics) to ``backup_dir``.

        After a failure (``failed``) it is a best effort on the main process alone: a second
        failure is logged, never raised over the first.
        """
        if self.backup is None or not self.write_files:
            return
        if not failed:
            self._backup(last=True)
            return
        try:
            self._backup(last=True)
            self.log(f"note: {self.backup} holds the last good checkpoint (iteration {self._backup_iteration})")
        except Exception as error:  # noqa: BLE001 - never mask the error that stopped the run
            self.log(f"warning: could not copy the last checkpoint to {self.backup}: {error}")

    def load(self, path, state: Optional[Dict[str, Any]] = None, *, from_backup: bool = False) -> None:
        """Continue from a checkpoint written by :meth:`_save` (configuration checked).

        ``state``: the file already read by :func:`load_checkpoint` (no second read).
        ``from_backup``: ``path`` is ``backup_dir/last.pt``; its ``metrics.jsonl`` and
        ``best.pt`` are copied into ``out`` when ``out`` has none, so that the run folder
        continues the same history.
        """
        path = Path(path)
        if state is None:
            state = load_checkpoint(path)
        check_resumable(config_of(state, path), self.config, path)
        for name in NETWORKS:
            getattr(self.model, name).load_state_dict(state["model"][name])
        fused = use_fused_adam(self.device)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            _match_adam_implementation(opt, fused)
        for name, scaler in self.scalers.items():
            saved = state.get("scalers", {}).get(name)
            if scaler.is_enabled() and saved:
                scaler.load_state_dict(saved)
        self.step = int(state["step"])
        self.iterations = int(state.get("iterations", self.step))
        self.restarts = int(state.get("restarts", 0))
        self.best_iou = state.get("best_iou")
        self.best_step = state.get("best_step")
        self.elapsed = float(state.get("elapsed_seconds", 0.0))
        self.images_seen = int(state.get("images_seen", 0))
        self.stream.load_state_dict(state["data"])
        self.fetcher.reset()
        self.last_saved_step = self.step
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank], {"trainer": self.rng})
        else:
            restore_rng_state(rng[0], {"trainer": self.rng})
            if self.dist.rank:
                self.rng.manual_seed(self.tc.seed * 1000 + 17 + self.dist.rank + 7 * self.step)
            self.log(f"note: {path} was written by {len(rng)} process(es), now {self.dist.world_size}: "
                     "the random streams of the other processes are re-seeded")
        self.resumed_from = path
        self._saved_iteration = self.iterations
        if from_backup:
            self._backup_iteration = self.iterations
            if self.write_files:
                self._restore_from_backup(path.parent)
        where = (f"the backup {path} ({self.out} has no last.pt)" if from_backup else f"{path}")
        self.log(f"resuming from {where} at step {self.step} (iteration {self.iterations}, "
                 f"restart {self.restarts})")

    def _restore_from_backup(self, backup: Path) -> None:
        """A new session: the run folder gets the backup's history, trimmed to the checkpoint.

        metrics.jsonl lines after the checkpoint's iteration (evaluations that the resumed
        run redoes) are dropped, so that none appears twice.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        metrics, best = backup / "metrics.jsonl", backup / "best.pt"
        if metrics.is_file() and not (self.out / "metrics.jsonl").exists():
            kept = []
            for line in metrics.read_text(encoding="utf-8").splitlines():
                try:
                    iteration = json.loads(line).get("iteration")
                except (json.JSONDecodeError, AttributeError):
                    continue  # a line cut by a kill
                if iteration is None or iteration <= self.iterations:
                    kept.append(line)
            text = "".join(line + "\n" for line in kept)
            _atomic_text(self.out / "metrics.jsonl", text)
        if best.is_file() and not (self.out / "best.pt").exists():
            atomic_copy(best, self.out / "best.pt")

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Dict[str, Any]:
        """Train until ``config.train.steps`` iterations of the current attempt (an automatic
        restart starts the count again), or ``train.max_iterations`` in all when it is set.

        The CUDA backend flags (:func:`run_backend_flags`) hold for this call only. A failed
        save raises :class:`CheckpointSaveError` (the previous checkpoint is intact; free
        space, then resume); with ``backup_dir``, ``last.pt`` is copied there when the run
        ends or stops, as far as possible.
        """
        with run_backend_flags(self.device, self.tc.tf32) as flags:
            return self._fit(flags)

    def _fit(self, flags: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        total = self.tc.steps
        self._t0 = time.perf_counter()
        self._pbar = None
        if self.write_files:
            event = "start" if self.iterations == 0 and not self._resumed else "resume"
            record = {"event": event, "step": self.step, "iteration": self.iterations, "restart": self.restarts,
                      "world_size": self.dist.world_size, "device": str(self.device),
                      "backend_flags": flags, "fused_adam": use_fused_adam(self.device),
                      "amp": None if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", ""),
                      "grad_scaler": self._use_scaler, "config": self.config.to_dict()}
            if self.resumed_from is not None:
                record["resumed_from"] = str(self.resumed_from)
            self._append_metrics(record)
        if self.step >= total or self._iteration_cap_reached():
            self.log(f"the run in {self.out} is already at step {self.step} (total {total}, iteration "
                     f"{self.iterations} of at most {self.tc.max_iterations or 'unlimited'}): nothing to do")
            self._final_backup(failed=False)
            return self.summary()
        if self.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=self._attempt_total(), initial=self.step, desc="train", dynamic_ncols=True,
                              file=sys.stderr, disable=None)
        per_iteration = self.images_per_iteration
        window_t, window_steps = time.perf_counter(), 0
        failed = True
        try:
            while self.step < total:
                losses = self.train_iteration()
                self.step += 1
                self.iterations += 1
                self.images_seen += per_iteration
                window_steps += 1
                self._pending.append((self.step, losses))
                if self._pbar is not None:
                    self._pbar.update(1)
                scheduled = self.step % self.tc.eval_every == 0
                out_of_time = self._out_of_time()
                capped = self._iteration_cap_reached()
                last = self.step == total or out_of_time or capped
                if self.step % self.tc.log_every == 0 or scheduled or last:
                    self._flush_losses()
                    self._show_losses()
                if scheduled or last:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    seconds = time.perf_counter() - window_t
                    window = {"it_per_s": round(window_steps / seconds, 4) if seconds > 0 else None,
                              "images_per_s": round(window_steps * per_iteration / seconds, 2) if seconds > 0 else None}
                    # no automatic restart at the cap: the run would end on fresh networks
                    self._evaluate_and_save(scheduled and not capped, window)
                    barrier(self.dist)
                    window_t, window_steps = time.perf_counter(), 0
                if capped:  # the cap counts every iteration, before and after automatic restarts
                    if self.step < total:
                        self.log(f"{self.iterations} iterations in all (train.max_iterations) reached at "
                                 f"step {self.step}")
                    break
                if out_of_time and self.step < total:  # (an auto-restart at the last step goes on)
                    self.log(f"time limit of {self.tc.time_limit_minutes:g} minutes reached at step {self.step}")
                    break
            failed = False
        except TrainingDiverged as error:
            self._append_metrics({"event": "diverged", "step": self.step, "iteration": self.iterations,
                                  "message": str(error)})
            raise
        except CheckpointSaveError as error:
            try:  # on a full disk this line may not fit either
                self._append_metrics({"event": "save_failed", "step": self.step, "iteration": self.iterations,
                                      "file": str(error.path), "needed_bytes": error.needed,
                                      "free_bytes": error.free, "message": str(error)})
            except OSError:
                pass
            raise
        finally:
            self.elapsed += time.perf_counter() - self._t0
            self._t0 = time.perf_counter()
            if self._pbar is not None:
                self._pbar.close()
                self._pbar = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if failed and self.dist.is_main:
                self._final_backup(failed=True)
        self._final_backup(failed=False)
        return self.summary()

    def _iteration_cap_reached(self) -> bool:
        """Whether ``train.max_iterations`` iterations have run, across restarts and resumes."""
        cap = self.tc.max_iterations
        return bool(cap) and self.iterations >= cap

    def _attempt_total(self) -> int:
        """The step at which the current attempt will stop: ``train.steps``, or earlier under
        ``train.max_iterations`` (the progress bar's total)."""
        total = self.tc.steps
        if self.tc.max_iterations:
            total = min(total, self.step + max(0, self.tc.max_iterations - self.iterations))
        return total

    def _out_of_time(self) -> bool:
        """Whether ``train.time_limit_minutes`` of training (across resumes) have passed.

        Every process takes the main process's answer, so all stop at the same step.
        """
        limit = self.tc.time_limit_minutes
        if not limit or self.step % self.tc.log_every:
            return False
        spent = self.elapsed + (time.perf_counter() - self._t0)
        return bool(broadcast_object(spent >= 60.0 * limit, self.dist))

    def _show_losses(self) -> None:
        if self._last_losses is None:
            return
        values = dict(zip(LOSS_NAMES, self._last_losses.tolist()))
        if self._pbar is not None:
            self._pbar.set_postfix({"d": f"{values['d_loss']:.3f}", "g": f"{values['g_adv']:.3f}",
                                    "info": f"{values['info_loss']:.3f}"}, refresh=False)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"loss/{key}", value, self.iterations)

    def summary(self) -> Dict[str, Any]:
        return {"step": self.step, "iterations": self.iterations, "restarts": self.restarts,
                "best_iou": self.best_iou, "best_step": self.best_step, "out": str(self.out),
                "seconds": round(self.elapsed, 2)}
