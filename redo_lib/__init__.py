"""redo_lib: ReDO, unsupervised object segmentation by redrawing (Chen et al., NeurIPS 2019)."""
__version__ = "0.1.0"

import os as _os

# Before torch starts: with OpenMP's default spin-waiting, two threads on a busy 2-core
# machine run about 20 times slower (toolchain notes). Users can still override it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import LossConfig, ModelConfig, OptimConfig, PRESETS, ReDOConfig, TrainConfig, get_preset
from .model import ReDO, count_parameters

__all__ = [
    "ReDO",
    "ReDOConfig",
    "ModelConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "PRESETS",
    "get_preset",
    "count_parameters",
    "__version__",
]
