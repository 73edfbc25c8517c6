"""The interactive explorer: figures react to the controls, the widget works without a kernel."""
import numpy as np
import pytest
import torch

from redo_lib import ReDO
from redo_lib.explorer import Explorer, codes_from_seed, explorer_figure, swap_regions_figure
from redo_lib.viz import figure_to_array
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReDO(tiny_config(32, 2))


def make_dataset(n=3, size=32):
    g = torch.Generator().manual_seed(1)
    items = []
    for _ in range(n):
        mask = torch.zeros(1, size, size)
        mask[:, 8:24, 8:24] = 1
        items.append({"image": torch.rand(3, size, size, generator=g) * 2 - 1, "mask": mask})
    return items


def test_explorer_figure_axes(model):
    image = make_dataset(1)[0]["image"]
    k = model.n_regions
    assert len(explorer_figure(model, image).axes) == 1 + k + 1 + k
    assert len(explorer_figure(model, image, redraw_region=1).axes) == 1 + k + 1 + 1
    assert len(explorer_figure(model, image, truth=make_dataset(1)[0]["mask"]).axes) == 2 + k + 1 + k
    with pytest.raises(ValueError):
        explorer_figure(model, image, temperature=0)


def test_explorer_figure_changes_with_temperature_threshold_and_z(model):
    image = make_dataset(1)[0]["image"]
    base = figure_to_array(explorer_figure(model, image))
    assert not np.array_equal(base, figure_to_array(explorer_figure(model, image, temperature=0.05)))
    # The threshold changes only the hard-mask panel (axes 3); pick thresholds on either
    # side of the mask values so the hard masks surely differ.
    with torch.no_grad():
        m0 = model.eval().mask_net(image[None])[0, 0]
    lo, hi = float(m0.min()) - 1e-3, float(m0.max()) + 1e-3
    fig_lo, fig_hi = explorer_figure(model, image, threshold=lo), explorer_figure(model, image, threshold=hi)
    assert not np.array_equal(fig_lo.axes[3].images[0].get_array(), fig_hi.axes[3].images[0].get_array())
    assert not np.array_equal(figure_to_array(fig_lo), figure_to_array(fig_hi))
    # Other z: the redrawn panels change, the masks do not.
    fig_a = explorer_figure(model, image, z=codes_from_seed(2, model.nz, 1))
    fig_b = explorer_figure(model, image, z=codes_from_seed(2, model.nz, 2))
    assert np.array_equal(fig_a.axes[1].images[0].get_array(), fig_b.axes[1].images[0].get_array())
    assert not np.array_equal(fig_a.axes[4].images[0].get_array(), fig_b.axes[4].images[0].get_array())


def test_low_temperature_gives_near_binary_masks(model):
    image = make_dataset(1)[0]["image"]
    soft = explorer_figure(model, image, temperature=5.0).axes[1].images[0].get_array()
    sharp = explorer_figure(model, image, temperature=0.05).axes[1].images[0].get_array()
    distance = lambda a: np.abs(np.asarray(a) - 0.5).mean()
    assert distance(sharp) > distance(soft)


def test_swap_regions_figure(model):
    items = make_dataset(2)
    assert len(swap_regions_figure(model, items[0]["image"], items[1]["image"], 1).axes) == 6


def test_explorer_static_figure_and_widget_callbacks(model):
    pytest.importorskip("ipywidgets")
    explorer = Explorer(model, make_dataset(3))
    assert not explorer.model.training
    assert len(explorer.static_figure(index=2).axes) == 1 + 1 + 2 + 1 + 2
    ui = explorer.widget()
    assert ui.children and explorer.renders == 1
    first = explorer.image_widget.value
    assert first[:4] == b"\x89PNG"
    explorer.controls["temperature"].value = 0.1
    assert explorer.renders == 2 and explorer.state["temperature"] == pytest.approx(0.1)
    assert explorer.image_widget.value != first
    before = explorer.image_widget.value
    explorer.controls["index"].value = 2
    assert explorer.image_widget.value != before
    swap_before = explorer.swap_widget.value
    explorer.controls["swap_index"].value = 0
    assert explorer.swap_widget.value != swap_before
    seed = explorer.controls["seed"].value
    explorer.controls["new_z"].click()
    assert explorer.controls["seed"].value == seed + 1 and explorer.state["seed"] == seed + 1
    explorer.controls["region"].value = 1
    assert explorer.state["region"] == 1


def test_explorer_without_ipywidgets_says_what_to_install(model, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "ipywidgets":
            raise ImportError("no ipywidgets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"redo-lib\[widgets\]"):
        Explorer(model, make_dataset(1)).widget()
