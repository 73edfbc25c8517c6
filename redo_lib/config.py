"""Typed configuration: one dataclass per concern, named presets.

The presets ``flowers``, ``lfw``, ``cub`` and ``cmnist`` reproduce the official settings
(per-data-set table; the official README's commands for Flowers and LFW,
the code's defaults for CUB and Colored-2-MNIST). ``synthetic-flat`` is sized for a 2-core CPU
and trains on the data set of the same name (a preset and a data set share a name only when
the preset trains on that data set; the preset's old name ``synthetic`` still loads, with a
notice, and means the same settings).

Everything here is plain data (ints, floats, bools, strings) so that a configuration can
be stored inside a checkpoint and loaded back with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict

SUPPORTED_IMAGE_SIZES = (32, 64, 128)


@dataclass
class ModelConfig:
    """Sizes of the four networks (official option names in brackets)."""

    image_size: int = 128  # [sizex]
    n_regions: int = 2  # K [nMasks]
    nz: int = 32  # latent size of each region [nz]
    nf_mask: int = 64  # base width of F [nfM]
    n_res_mask: int = 3  # residual blocks of F [nResM]
    nf_gen: int = 64  # base width of each G_k [nfX]
    nf_disc: int = 64  # base width of D [nfD]
    nf_info: int = 64  # base width of delta [nfZ]
    self_attention_gen: bool = False  # [useSelfAttG]
    self_attention_disc: bool = False  # [useSelfAttD]
    temperature: float = 1.0  # T of F's sigmoid / softmax [temperature]
    # "official": average pooling with kernel = stride = s // n on the s x s feature map
    # (exactly the official layer at 128 x 128, where s = 32); "adaptive": PSPNet's
    # adaptive average pooling to n x n bins, which uses every pixel at any size.
    pyramid_pooling: str = "official"
    spectral_norm: bool = True
    init_gain: float = 0.8  # orthogonal initialisation gain [initOrthoGain]

    def validate(self) -> "ModelConfig":
        if self.image_size not in SUPPORTED_IMAGE_SIZES:
            raise ValueError(
                f"image_size={self.image_size} is not supported; choose one of {SUPPORTED_IMAGE_SIZES}"
            )
        if self.n_regions < 2:
            raise ValueError(f"n_regions={self.n_regions}: ReDO needs at least 2 regions (K >= 2)")
        if self.pyramid_pooling not in ("official", "adaptive"):
            raise ValueError(
                f"pyramid_pooling={self.pyramid_pooling!r}: choose 'official' or 'adaptive'"
            )
        for name in ("nz", "nf_mask", "nf_gen", "nf_disc", "nf_info"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.nf_mask % 4:
            raise ValueError(f"nf_mask={self.nf_mask} must be a multiple of 4")
        return self


@dataclass
class LossConfig:
    """The objectives and the reproducibility study's corrections."""

    lambda_z: float = 5.0  # weight of the information-conservation loss [wrecZ]
    # "mean_squared": the code's mean of element-wise squares (corrections 2 and 3);
    # "l2_norm": the preprint's plain (unsquared) L2 norm per region.
    info_loss: str = "mean_squared"
    # "all": every region redrawn and every G_k updated at each step (correction 1);
    # "one": the preprint's Algorithm 1, one region i ~ U(K) sampled per step.
    regions: str = "all"
    # Addition (not ReDO): PerturbGAN's minimum-area hinge (Bielski & Favaro 2019),
    # min_area_weight * mean over images and regions of relu(min_area - mean of M_k), which
    # stops a region from shrinking to nothing (redo_lib.losses.min_area_loss). 0: off (ReDO).
    min_area: float = 0.0
    # 10: the synthetic presets' lambda_z, so that the floor outweighs the adversarial term
    # where it is active (a choice of this library; the hinge's source gives no weight).
    min_area_weight: float = 10.0
    # Addition (not ReDO): PerturbGAN's binarisation term, weight * mean of min(M, 1 - M)
    # over every pixel of every mask (redo_lib.losses.binarization_loss), against masks that
    # hold a region as a faint haze below 0.5. PerturbGAN's weight is 2. 0: off (ReDO).
    binarization: float = 0.0

    def validate(self) -> "LossConfig":
        if self.info_loss not in ("mean_squared", "l2_norm"):
            raise ValueError(f"info_loss={self.info_loss!r}: choose 'mean_squared' or 'l2_norm'")
        if self.regions not in ("all", "one"):
            raise ValueError(f"regions={self.regions!r}: choose 'all' or 'one'")
        if self.lambda_z < 0:
            raise ValueError(f"lambda_z must be >= 0, got {self.lambda_z}")
        if not 0 <= self.min_area < 1:
            raise ValueError(f"min_area={self.min_area}: a share of the image in [0, 1) (0: off)")
        if self.min_area_weight < 0:
            raise ValueError(f"min_area_weight must be >= 0, got {self.min_area_weight}")
        if self.binarization < 0:
            raise ValueError(f"binarization must be >= 0 (0: off), got {self.binarization}")
        return self


@dataclass
class OptimConfig:
    """Adam (beta1 = 0, beta2 = 0.9) for every network, official learning rates."""

    lr_mask: float = 1e-5  # [lrM]
    lr_gen: float = 1e-4  # [lrG]
    lr_disc: float = 1e-4  # [lrD]
    lr_info: float = 1e-4  # [lrZ]
    weight_decay_mask: float = 1e-4  # coupled L2 on F only [wdecay]
    beta1: float = 0.0
    beta2: float = 0.9


@dataclass
class TrainConfig:
    """The training loop: batch size, length, evaluation and collapse handling."""

    dataset: str = "flowers"
    # 20: the official code's default, which the official README's commands keep
    # (redo-spec.md Sec. 3); the reproducibility report quotes 25. The presets reproduce the
    # official code, so flowers / lfw / cub / cmnist train at 20, and benchmarks/gpu_check.sh
    # measures Flowers at the preset's batch size.
    batch_size: int = 20
    steps: int = 20000
    eval_every: int = 500  # [checkpointFreq]
    d_steps: int = 1  # D updates per generator update (official: 1)
    # F held fixed for the first N iterations of each attempt while G_k, D and delta train
    # on its masks (0: the official loop, F trains from the first iteration).
    mask_warmup: int = 0
    auto_restart: float = 0.0  # [autoRestart]: restart if the smaller region < x
    auto_restart_until: int = 7000  # official: restarts only up to iteration 7000
    max_eval_images: int = 0  # 0: every image of the validation split
    # stop (after a last evaluation and checkpoint) once this many minutes of training,
    # evaluations included, have passed across resumes (0: no limit, run all the steps)
    time_limit_minutes: float = 0.0
    # stop (after a last evaluation and checkpoint) once this many iterations have run in
    # all, across automatic restarts and resumes (0: no cap). ``steps`` counts the iterations
    # of the current attempt, which an automatic restart starts again from 0.
    max_iterations: int = 0
    seed: int = 0
    num_workers: int = 0
    # Keep the decoded, preprocessed images of data sets on disk (training split; the
    # validation split with its masks) in memory as uint8 after the first pass, when the
    # estimate (printed at start) fits in half the available memory; same tensors as
    # decoding every batch, several times faster (redo_lib.training.data.plan_image_cache).
    cache_images: bool = True
    # Added for the training engine (redo_lib.training):
    data_root: str = ""  # where the data set lives ("" : the data layer's default)
    train_eval_images: int = 500  # fixed training subset scored at each evaluation (0: none)
    eval_batch_size: int = 50
    log_every: int = 10  # progress-bar update and NaN check interval (steps)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # mixed precision on CUDA: bf16 on compute capability >= 8.0, else fp16 + GradScaler
    # Channels-last memory format for the networks and every batch (CPU and CUDA): the same
    # updates with another float rounding; +18 % iterations per second at 32 px and +22 % at
    # 64 px on one CPU thread (benchmarks/README.md). --no-channels-last turns it off.
    channels_last: bool = True
    compile: bool = False  # torch.compile the networks
    # torch.compile backend of --compile: "inductor" (generated kernels), "aot_eager" or
    # "eager" (graph capture only: cheap, for tests and debugging), or any registered one.
    # Inductor works on the spectrally normalised networks: their power iterations run
    # outside the compiled graphs (redo_lib.layers.SpectralNormConv2d). On the CPU it needs a
    # C++ compiler (g++) and compiles for minutes before the first iteration.
    compile_backend: str = "inductor"
    # D step on the generator step's (detached) fakes instead of regenerating them:
    # ~16% faster, departs from the official loop (fakes one update older).
    reuse_fakes: bool = False
    # TF32 tensor-core math for float32 matmuls and convolutions on CUDA (Ampere and later;
    # set for the run only, restored after it; false: strict IEEE float32, slower).
    tf32: bool = True
    # Colab: --out on the local disk receives last.pt at every evaluation; backup_dir (e.g.
    # on Google Drive) receives best.pt and metrics.jsonl at every evaluation and a copy of
    # last.pt every backup_every evaluations and at the end of the run ("": no backup).
    # --resume restores from backup_dir/last.pt when --out has none (a new session).
    backup_dir: str = ""
    backup_every: int = 4


@dataclass
class ReDOConfig:
    """Everything needed to rebuild a run: the model, the losses, optimisers and loop."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "ReDOConfig":
        self.model.validate()
        self.loss.validate()
        return self

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ReDOConfig":
        sections = {"model": ModelConfig, "loss": LossConfig, "optim": OptimConfig, "train": TrainConfig}
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown configuration sections {sorted(unknown)}; valid: {sorted(sections)}")
        kwargs = {}
        for name, section_cls in sections.items():
            values = dict(data.get(name, {}))
            valid = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(values) - valid
            if bad:
                raise ValueError(
                    f"unknown option(s) {sorted(bad)} in section '{name}'; valid: {sorted(valid)}"
                )
            kwargs[name] = section_cls(**values)
        return cls(**kwargs).validate()

    def diff(self, other: "ReDOConfig") -> Dict[str, Any]:
        """``{"section.option": (self_value, other_value)}`` for every option that differs."""
        a, b = self.to_dict(), other.to_dict()
        return {
            f"{s}.{k}": (a[s][k], b[s][k]) for s in a for k in a[s] if a[s][k] != b[s].get(k)
        }


def _flowers() -> ReDOConfig:
    return ReDOConfig(
        model=ModelConfig(nf_gen=32, self_attention_gen=True, self_attention_disc=True),
        train=TrainConfig(dataset="flowers"),
    )


def _lfw() -> ReDOConfig:
    return ReDOConfig(
        model=ModelConfig(nf_gen=64, self_attention_gen=True, self_attention_disc=True),
        train=TrainConfig(dataset="lfw"),
    )


def _cub() -> ReDOConfig:
    return ReDOConfig(train=TrainConfig(dataset="cub"))


def _cmnist() -> ReDOConfig:
    return ReDOConfig(model=ModelConfig(n_regions=3), train=TrainConfig(dataset="cmnist"))


def _synthetic_flat() -> ReDOConfig:
    """A compact ReDO for a 2-core CPU on flat-coloured images (32 x 32, K = 2).

    Its data set is ``synthetic-flat``, the easiest level of the ladder of difficulty
    (one object of one flat colour on a background of another); it is also the preset to
    use on a folder of your own flat-coloured images (``--dataset folder``). Measured
    settings (the book's chapter "What makes ReDO learn"; ``benchmarks/ladder.py``):

    * ``nz = 3``: a flat region can show three numbers (its colour). A longer code can
      only be recovered by delta if the generators paint patterns real images do not have,
      and D then wins (flat level, 30 minutes: test IoU 0.43 with nz 8, 0.81 with nz 3).
    * ``lr_mask = 3e-4``: F follows the objects sooner once D and the generators can
      judge its masks (the official F is ten times slower than G; a 32 x 32 model on a
      CPU budget cannot wait that long).
    * ``d_steps = 3``: 3 updates of D per generator update (the official loop makes one;
      its ``--gStepFreq`` gives the same ratio with new composites for each update). Once
      the masks are on the objects, only D can see a mask that is a pixel off the outline;
      with more updates D keeps up with the generators and the outlines sharpen further.
    * a strong information term (lambda_z = 10) and faster delta and D than the official
      1e-4; automatic restart below a smaller region of 5 % until iteration 3000.
    """
    return ReDOConfig(
        model=ModelConfig(
            image_size=32,
            nz=3,
            nf_mask=32,
            n_res_mask=2,
            nf_gen=16,
            nf_disc=16,
            nf_info=16,
            pyramid_pooling="adaptive",
        ),
        loss=LossConfig(lambda_z=10.0),
        optim=OptimConfig(lr_mask=3e-4, lr_gen=2e-4, lr_disc=4e-4, lr_info=5e-4),
        train=TrainConfig(dataset="synthetic-flat", batch_size=16, d_steps=3, steps=20000, eval_every=250,
                          auto_restart=0.05, auto_restart_until=3000),
    )


PRESETS = {
    "flowers": _flowers,
    "lfw": _lfw,
    "cub": _cub,
    "cmnist": _cmnist,
    "synthetic-flat": _synthetic_flat,
}

#: old preset names, still accepted by :func:`get_preset` (and ``--preset``) with a notice:
#: ``synthetic`` was renamed because the data set ``synthetic`` is the *textured* level,
#: while the preset trains on ``synthetic-flat``.
RENAMED_PRESETS = {"synthetic": "synthetic-flat"}


class PresetRenamedWarning(FutureWarning):
    """A preset was asked for by its old name (see :data:`RENAMED_PRESETS`)."""


def get_preset(name: str) -> ReDOConfig:
    """A fresh copy of the named preset; unknown names list the valid ones.

    An old name (:data:`RENAMED_PRESETS`) gives the renamed preset with a
    :class:`PresetRenamedWarning` that names the new one."""
    if name in RENAMED_PRESETS:
        import warnings

        new = RENAMED_PRESETS[name]
        warnings.warn(f"preset {name!r} is now called {new!r} (same settings; it trains on the "
                      f"data set {new!r}, while the data set {name!r} is the textured level): "
                      f"use --preset {new}", PresetRenamedWarning, stacklevel=2)
        name = new
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
    return factory().validate()
