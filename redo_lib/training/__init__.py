"""Training engine of redo_lib: the loop, checkpoints, data order, multi-process helpers.

- :class:`~redo_lib.training.trainer.Trainer`: the official training loop,
  periodic evaluation, ``best.pt`` / ``last.pt``, auto-restart on collapse, AMP / DDP.
- :mod:`~redo_lib.training.checkpoint`: atomic checkpoints holding every random state
  (``last.pt``) or the networks only (``best.pt``, ``redo export``); :func:`load_model`
  rebuilds a trained model from either; a failed write raises :class:`CheckpointSaveError`.
- :mod:`~redo_lib.training.data`: the deterministic, resumable order of training batches.
- :mod:`~redo_lib.training.evaluation`: scoring a mask predictor on a split.
- :mod:`~redo_lib.training.distributed`: DDP helpers (``torchrun``).
"""
from .checkpoint import (
    CheckpointError,
    CheckpointSaveError,
    atomic_save,
    checkpoint_sizes,
    load_checkpoint,
    load_model,
)
from .data import BatchStream
from .evaluation import evaluate_masks, evaluate_model
from .trainer import RunExistsError, Trainer, TrainingDiverged, resolve_device

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "RunExistsError",
    "CheckpointError",
    "CheckpointSaveError",
    "checkpoint_sizes",
    "BatchStream",
    "atomic_save",
    "load_checkpoint",
    "load_model",
    "evaluate_masks",
    "evaluate_model",
    "resolve_device",
]
