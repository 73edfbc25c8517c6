"""redo_lib: ReDO, unsupervised object segmentation by redrawing (Chen et al., NeurIPS 2019)."""
__version__ = "0.1.0"

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
