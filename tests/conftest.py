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


@pytest.fixture()
def no_proxy(monkeypatch):
    """Never route a local test server through a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture()
def fresh_dynamo():
    """Empty torch.compile's caches and dynamo's counters before and after the test."""
    from torch._dynamo.utils import counters

    torch.compiler.reset()
    counters.clear()
    yield
    torch.compiler.reset()
    counters.clear()
