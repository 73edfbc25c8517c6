import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from redo_lib import ModelConfig  # noqa: E402


def tiny_config(image_size: int = 32, n_regions: int = 2, **overrides) -> ModelConfig:
    """A network small enough to run in milliseconds on the CPU."""
    values = dict(image_size=image_size, n_regions=n_regions, nz=8, nf_mask=8, n_res_mask=1,
                  nf_gen=4, nf_disc=4, nf_info=4, pyramid_pooling="adaptive")
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
