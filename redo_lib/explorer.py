r"""An interactive explorer of a ReDO model: masks, temperature, threshold, redraws, swaps.

The rendering is plain functions that return matplotlib figures
(:func:`explorer_figure`, :func:`swap_regions_figure`), so it is tested and usable without
a Jupyter kernel. :class:`Explorer` wraps them in ipywidgets controls; the figures are
shown as PNG bytes in ``ipywidgets.Image`` widgets, so a notebook saved with its widget
state (and the static book built from it) shows the last rendered pictures too, while only
a live kernel re-renders them when a control moves.

What each control illustrates (paper section 3):

* **image** picker: the input :math:`I`;
* **temperature** :math:`T`: the composition step :math:`M = \sigma(\ell / T)` (K = 2) or
  :math:`\mathrm{softmax}(\ell / T)` over regions, where :math:`\ell` are F's logits: a low
  temperature gives near-binary masks, a high one blurry masks (the redraws use these
  masks, so the effect on the assembled image shows too);
* **threshold**: the hard mask :math:`M_0 \ge t` the evaluation scores (0.5 officially;
  K = 2 only, K > 2 takes the arg-max);
* **region** and **z seed** / **new z**: the redrawing step :math:`V_k = G_k(M_k, z_k)`
  and the assembling step :math:`G_k(M_k, z_k) + (1 - M_k) \odot I`, for one region or all;
* **swap with**: a second image; its region and the first image's are exchanged
  (:func:`redo_lib.viz.swap`), the independence assumption.

The explorer puts the model in eval mode and renders under :func:`torch.no_grad`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np
import torch
from matplotlib.figure import Figure

from .generative import assemble
from .viz import (
    _batch,
    _device,
    _evaluating,
    _mask_image,
    _region_name,
    _show,
    _truth_labels,
    figure_to_png,
    hard_mask,
    overlay,
    swap_figure,
    to_image,
)

__all__ = ["explorer_figure", "swap_regions_figure", "codes_from_seed", "Explorer",
           "TEMPERATURE_RANGE"]

Tensor = torch.Tensor

#: (min, max) of the temperature slider (log scale).
TEMPERATURE_RANGE = (0.05, 5.0)


def codes_from_seed(n_regions: int, nz: int, seed: int) -> Tensor:
    """The codes :math:`z \\sim \\mathcal{N}(0, I)` the explorer uses for ``seed``: (K, nz)."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(n_regions, nz, generator=generator)


def explorer_figure(model, image: Tensor, *, temperature: float = 1.0, threshold: float = 0.5,
                    z: Optional[Tensor] = None, redraw_region: Optional[int] = None,
                    truth: Optional[Tensor] = None, panel: float = 1.8) -> Figure:
    r"""One image through the generative process, at a chosen temperature and threshold.

    Panels, left to right: the image :math:`I` (3, H, W); its ground truth drawn over it
    (only when ``truth`` (1|C, H, W) is given); each region's soft mask
    :math:`M_k = F(I)_k` at ``temperature`` (composition, step 1); the hard mask at
    ``threshold`` drawn over the image; then for each region k (or only ``redraw_region``)
    the assembled image :math:`G_k(M_k, z_k) + (1 - M_k) \odot I` with region k redrawn
    (steps 2 and 3) with code ``z[k]`` (``z`` (K, nz); default: :func:`codes_from_seed` 0).

    So a Figure with ``1 + has_truth + K + 1 + (K or 1)`` axes in one row.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    device = _device(model)
    x = _batch(image)[:1].to(device)
    k_regions, nz = model.n_regions, model.nz
    if redraw_region is not None and not 0 <= redraw_region < k_regions:
        raise ValueError(f"redraw_region must be None or in [0, {k_regions}), got {redraw_region}")
    if z is None:
        z = codes_from_seed(k_regions, nz, 0)
    z = z.reshape(1, k_regions, nz).to(device, x.dtype)
    regions = list(range(k_regions)) if redraw_region is None else [redraw_region]

    with _evaluating(model):
        masks = model.mask_net(x, temperature=temperature)  # (1, K, H, W)
        composites = assemble(x, masks, model.generator(masks, z, regions=regions))[0]  # (K, 3, H, W)
    labels = hard_mask(masks, threshold)[0]

    has_truth = truth is not None
    n_axes = 1 + int(has_truth) + k_regions + 1 + len(regions)
    fig = Figure(figsize=(panel * n_axes, panel + 0.45), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n_axes, squeeze=False)[0])
    image_cpu = x[0].cpu()
    column = 0
    _show(axes[column], to_image(image_cpu), "image")
    column += 1
    if has_truth:
        t = _truth_labels(_batch(truth).cpu())[0]
        _show(axes[column], overlay(image_cpu, (t == 0).float() if truth.shape[-3] <= 2 else t), "truth")
        column += 1
    for k in range(k_regions):
        _show(axes[column], _mask_image(masks[0, k].cpu()), f"$M_{k}$, T={temperature:.3g}")
        column += 1
    if k_regions == 2:
        hard, title = (labels == 0).float().cpu(), f"$M_0 \\geq {threshold:.2f}$"
    else:
        hard, title = labels.cpu(), "arg-max region"
    _show(axes[column], overlay(image_cpu, hard), title)
    column += 1
    for k in regions:
        _show(axes[column], to_image(composites[k].cpu()), f"{_region_name(k, k_regions)} redrawn")
        column += 1
    return fig


def swap_regions_figure(model, image_a: Tensor, image_b: Tensor, region: int = 0, *,
                        temperature: Optional[float] = None) -> Figure:
    r"""Exchange region ``region`` between two images: :func:`redo_lib.viz.swap_figure`.

    :math:`M^a_k \odot I_a + (1 - M^a_k) \odot I_b` and the reverse (the assembling step
    with another image in place of the redraw), masks at ``temperature`` (default: the
    model's). A Figure of 2 rows x 3 columns.
    """
    return swap_figure(model, image_a, image_b, region, temperature=temperature)


def _import_widgets():
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "the interactive explorer needs ipywidgets: pip install 'redo-lib[widgets]' "
            "(or pip install ipywidgets)"
        ) from error
    enable_colab_widgets()
    return ipywidgets


def enable_colab_widgets() -> bool:
    """On Google Colab, switch on its custom widget manager; elsewhere do nothing.

    Colab renders its own preinstalled ipywidgets (7) out of the box, but ipywidgets 8
    (what ``pip install 'redo-lib[widgets]'`` installs) only shows its controls once
    ``google.colab.output.enable_custom_widget_manager()`` has run. Returns whether it ran.
    """
    import sys

    if "google.colab" not in sys.modules:
        return False
    try:
        from google.colab import output
    except ImportError:  # pragma: no cover - a stub module named google.colab
        return False
    enable = getattr(output, "enable_custom_widget_manager", None)
    if enable is None:  # an old Colab runtime: nothing to switch on
        return False
    enable()
    return True


ALL_REGIONS = -1  #: the region dropdown's value for "redraw every region"


class Explorer:
    """Interactive explorer of ``model`` on the items of ``dataset``.

    ``dataset[i]`` is a dict with ``"image"`` (3, S, S) in [-1, 1] and optionally
    ``"mask"`` (the ground truth, drawn when present). The model is moved to ``device`` and
    put in eval mode. :meth:`widget` builds the ipywidgets interface (needs ``ipywidgets``,
    not a kernel); :meth:`figure` and :meth:`static_figure` render without widgets.

    >>> explorer = Explorer(model, SyntheticShapes(split="val", image_size=64))
    >>> explorer.widget()                 # in a notebook: sliders, buttons and pictures
    >>> explorer.static_figure(index=3)   # the same picture as a matplotlib Figure
    """

    def __init__(self, model, dataset, device="cpu", *, dpi: int = 80) -> None:
        if len(dataset) == 0:
            raise ValueError("the explorer needs a non-empty data set")
        self.model = model.to(device).eval()
        self.dataset = dataset
        self.device = torch.device(device)
        self.dpi = dpi
        #: The current settings; :meth:`widget`'s controls write here.
        self.state: Dict[str, Any] = {
            "index": 0,
            "temperature": float(getattr(model.config, "temperature", 1.0)),
            "threshold": 0.5,
            "region": None,  # None: redraw every region; k: only region k
            "seed": 0,
            "swap_index": min(1, len(dataset) - 1),
        }
        self.controls: Dict[str, Any] = {}
        self.image_widget = None
        self.swap_widget = None
        self.renders = 0  # how many times the widgets' pictures were drawn (for tests)

    # -- rendering -------------------------------------------------------------------
    def _item(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self.dataset):
            raise IndexError(f"index must be in [0, {len(self.dataset)}), got {index}")
        return self.dataset[index]

    def figure(self, **overrides) -> Figure:
        """:func:`explorer_figure` for the current :attr:`state` (updated by ``overrides``)."""
        state = {**self.state, **overrides}
        item = self._item(int(state["index"]))
        z = codes_from_seed(self.model.n_regions, self.model.nz, int(state["seed"]))
        return explorer_figure(self.model, item["image"], temperature=float(state["temperature"]),
                               threshold=float(state["threshold"]), z=z,
                               redraw_region=state["region"], truth=item.get("mask"))

    def swap_figure(self, **overrides) -> Figure:
        """:func:`swap_regions_figure` of the current image and the ``swap_index`` image."""
        state = {**self.state, **overrides}
        region = 0 if state["region"] is None else int(state["region"])
        return swap_regions_figure(self.model, self._item(int(state["index"]))["image"],
                                   self._item(int(state["swap_index"]))["image"], region,
                                   temperature=float(state["temperature"]))

    def static_figure(self, index: int = 0, **settings) -> Figure:
        """The explorer's main figure for image ``index``, default settings unless given."""
        return self.figure(index=index, **settings)

    def render(self) -> None:
        """Redraw the pictures of the widget from :attr:`state` (called by every control)."""
        if self.image_widget is None:
            return
        self.image_widget.value = figure_to_png(self.figure(), dpi=self.dpi)
        self.swap_widget.value = figure_to_png(self.swap_figure(), dpi=self.dpi)
        self.renders += 1

    # -- widgets ---------------------------------------------------------------------
    def widget(self):
        """The ipywidgets interface: controls above, the two pictures below.

        Controls: image index (slider), temperature (log slider, 0.05 to 5), threshold
        (slider, K = 2 only), region to redraw (dropdown: all or one), z seed (integer) and
        a "new z" button (next seed), and the index of the image to swap regions with.
        """
        widgets = _import_widgets()
        last = len(self.dataset) - 1
        k_regions = self.model.n_regions
        style = {"description_width": "initial"}
        lo, hi = TEMPERATURE_RANGE
        c = self.controls
        c["index"] = widgets.IntSlider(value=self.state["index"], min=0, max=last, description="image",
                                       continuous_update=False, style=style)
        c["temperature"] = widgets.FloatLogSlider(value=self.state["temperature"], base=10,
                                                  min=math.log10(lo), max=math.log10(hi), step=0.02,
                                                  description="temperature", continuous_update=False,
                                                  style=style, readout_format=".3g")
        c["threshold"] = widgets.FloatSlider(value=self.state["threshold"], min=0.0, max=1.0, step=0.01,
                                             description="threshold", continuous_update=False,
                                             style=style, disabled=k_regions != 2)
        # -1 stands for "all regions" (None would show as an empty selection in ipywidgets)
        options = [("all regions", ALL_REGIONS)] + [(_region_name(k, k_regions), k) for k in range(k_regions)]
        region = self.state["region"]
        c["region"] = widgets.Dropdown(options=options, value=ALL_REGIONS if region is None else region,
                                       description="redraw / swap", style=style)
        c["seed"] = widgets.IntText(value=self.state["seed"], description="z seed", style=style,
                                    layout=widgets.Layout(width="160px"))
        c["new_z"] = widgets.Button(description="new z", tooltip="draw new codes (next seed)")
        c["swap_index"] = widgets.IntSlider(value=self.state["swap_index"], min=0, max=last,
                                            description="swap with image", continuous_update=False,
                                            style=style)
        self.image_widget = widgets.Image(format="png")
        self.swap_widget = widgets.Image(format="png")

        def on_change(name):
            def callback(change):
                value = change["new"]
                self.state[name] = None if (name == "region" and value == ALL_REGIONS) else value
                self.render()
            return callback

        for name in ("index", "temperature", "threshold", "region", "seed", "swap_index"):
            c[name].observe(on_change(name), names="value")
        c["new_z"].on_click(lambda _button: setattr(c["seed"], "value", c["seed"].value + 1))

        self.render()
        return widgets.VBox([
            widgets.HBox([c["index"], c["temperature"], c["threshold"]]),
            widgets.HBox([c["region"], c["seed"], c["new_z"]]),
            self.image_widget,
            c["swap_index"],
            self.swap_widget,
        ])
