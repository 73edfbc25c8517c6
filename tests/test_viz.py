"""Figures and grids of redo_lib.viz: layout, content and the fixed-code property."""
import json

import numpy as np
import pytest
import torch

from redo_lib import ReDO
from redo_lib import viz
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReDO(tiny_config(32, 2))


def images(b=3, size=32):
    return torch.rand(b, 3, size, size) * 2 - 1


def truth(b=3, size=32):
    t = torch.zeros(b, 1, size, size)
    t[:, :, 8:24, 8:24] = 1
    return t


def test_to_image_maps_minus_one_one_to_unit_range_and_clips():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 4).expand(3, 1, 4)
    out = viz.to_image(x)
    assert out.shape == (1, 4, 3)
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.5, 1.0, 1.0])
    assert viz.to_image(torch.zeros(5, 6)).shape == (5, 6, 3)
    with pytest.raises(ValueError):
        viz.to_image(torch.zeros(2, 4, 4))


def test_show_images_has_one_axes_per_image():
    fig = viz.show_images(images(5), ncols=2, titles=list("abcde"))
    assert len(fig.axes) == 5
    assert fig.axes[0].images[0].get_array().shape == (32, 32, 3)


def test_sample_grid_shape_follows_the_official_layout(model):
    b, n_z, pad = 3, 4, 2
    grid = viz.sample_grid(model, images(b), truth(b), torch.randn(n_z, model.nz), padding=pad)
    rows, cols = model.n_regions * (b + 1), n_z + 5
    assert grid.shape == (3, rows * (32 + pad) + pad, cols * (32 + pad) + pad)
    assert grid.min() >= 0 and grid.max() <= 1
    # Block k = 0, image row 1: column 0 is the input, column 1 the truth.
    cell = lambda r, c: grid[:, pad + r * (32 + pad):pad + r * (32 + pad) + 32,
                             pad + c * (32 + pad):pad + c * (32 + pad) + 32]
    assert torch.all(cell(0, 0) == 0)  # blank separator row
    assert torch.allclose(cell(1, 1), truth(1)[0].expand(3, -1, -1))


def test_sample_grid_is_deterministic_and_handles_missing_truth_and_k3():
    model = ReDO(tiny_config(32, 3))
    x, zf = images(2), torch.randn(2, model.nz)
    g1 = viz.sample_grid(model, x, None, zf, seed=5)
    g2 = viz.sample_grid(model, x, None, zf, seed=5)
    assert torch.equal(g1, g2)
    assert g1.shape == (3, 3 * 3 * 34 + 2, 7 * 34 + 2)


def test_redraw_figure_layout_and_fixed_codes_across_rows(model):
    b, n_z = 3, 2
    x = images(b)
    fig = viz.redraw_figure(model, x, truth(b), n_z=n_z, seed=7)
    n_cols = 3 + model.n_regions * n_z
    assert len(fig.axes) == b * n_cols
    # Recompute one panel: row 2, region 1 ("background"), code j = 1.
    codes = viz.fixed_codes(model.n_regions, n_z, model.nz, seed=7)
    row, k, j = 2, 1, 1
    with torch.no_grad():
        model.eval()
        masks = model.mask_net(x)
        z = torch.zeros(b, model.n_regions, model.nz)
        z[:, k] = codes[k, j]
        expected = model.generator(masks, z)[:, k] + (1 - masks[:, k:k + 1]) * x
    shown = fig.axes[row * n_cols + 3 + k * n_z + j].images[0].get_array()
    np.testing.assert_allclose(shown, viz.to_image(expected[row]), atol=1e-5)
    # The same column on another row used the same code: recomputing row 0 with it matches.
    shown0 = fig.axes[0 * n_cols + 3 + k * n_z + j].images[0].get_array()
    np.testing.assert_allclose(shown0, viz.to_image(expected[0]), atol=1e-5)


def test_redraw_figure_without_truth_and_k3_and_restores_training_mode():
    model = ReDO(tiny_config(32, 3)).train()
    fig = viz.redraw_figure(model, images(2), n_z=2)
    assert len(fig.axes) == 2 * (2 + 3 * 2)
    assert model.training


def test_mask_figure_columns_and_overlay():
    x = images(2)
    m = torch.rand(2, 1, 32, 32)
    masks = torch.cat([m, 1 - m], 1)
    fig = viz.mask_figure(x, masks, truth(2))
    assert len(fig.axes) == 2 * (1 + 2 + 1 + 1)
    assert fig.axes[1].images[0].get_array().shape == (32, 32, 3)
    # Overlay: no tint where the mask is 0, full colour blend where it is 1.
    img = torch.zeros(3, 4, 4)  # grey 0.5
    mask = torch.zeros(4, 4)
    mask[0, 0] = 1
    out = viz.overlay(img, mask, color=(1, 0, 0), alpha=1.0)
    np.testing.assert_allclose(out[0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[1, 1], [0.5, 0.5, 0.5])
    labels = viz.overlay(img[:, :2, :2], torch.tensor([[0, 1], [2, 2]]), alpha=1.0)
    np.testing.assert_allclose(labels[1, 0], viz.PALETTE[2], rtol=1e-6)


def test_mask_figure_threshold_changes_hard_mask():
    x = images(1)
    masks = torch.cat([torch.full((1, 1, 32, 32), 0.6), torch.full((1, 1, 32, 32), 0.4)], 1)
    low = viz.mask_figure(x, masks, threshold=0.5).axes[3].images[0].get_array()
    high = viz.mask_figure(x, masks, threshold=0.7).axes[3].images[0].get_array()
    assert not np.allclose(low, high)
    assert torch.equal(viz.hard_mask(masks, 0.5), torch.zeros(1, 32, 32, dtype=torch.long))
    assert torch.equal(viz.hard_mask(masks, 0.7), torch.ones(1, 32, 32, dtype=torch.long))


def test_swap_pastes_each_object_on_the_other_background(model):
    a, b = images(1)[0], images(1)[0]
    out = viz.swap(model, a, b, region=0)
    ma = out["mask_a"]
    assert torch.allclose(out["a_on_b"], ma * a + (1 - ma) * b, atol=1e-6)
    mb = out["mask_b"]
    assert torch.allclose(out["b_on_a"], mb * b + (1 - mb) * a, atol=1e-6)
    fig = viz.swap_figure(model, a, b)
    assert len(fig.axes) == 6
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), viz.to_image(out["a_on_b"]), atol=1e-6)


def test_load_metrics_skips_events_and_broken_lines_and_curves_plot_each_series(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"event": "start", "step": 0},
        {"step": 500, "restart": 0, "iou": 0.3, "accuracy": 0.6, "train": {"iou": 0.35, "accuracy": 0.65}},
        {"step": 1000, "restart": 0, "iou": 0.5, "accuracy": 0.7, "train": None},
        {"step": 1000, "restart": 0, "iou": None, "accuracy": None, "train": None},
        {"event": "auto_restart", "step": 1000},
        {"step": 1500, "split": "test", "iou": 0.55},
        {"step": 1500, "train_iou": 0.6},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n{\"step\": 15")
    with pytest.warns(UserWarning):
        records = viz.load_metrics(path)
    assert [r["step"] for r in records] == [500, 1000, 1500, 1500]
    fig = viz.curves_figure(records, reference={"iou": 0.764})
    assert len(fig.axes) == 2
    iou_axes, acc_axes = fig.axes
    lines_by_label = {line.get_label(): line for line in iou_axes.get_lines()}
    assert sorted(lines_by_label) == ["reference 0.764", "test/iou", "train/iou", "train_iou", "val/iou"]
    np.testing.assert_allclose(lines_by_label["val/iou"].get_xdata(), [500, 1000])
    np.testing.assert_allclose(lines_by_label["val/iou"].get_ydata(), [0.3, 0.5])
    np.testing.assert_allclose(lines_by_label["train/iou"].get_ydata(), [0.35])
    assert sorted(line.get_label() for line in acc_axes.get_lines()) == ["train/accuracy", "val/accuracy"]


def test_curves_figure_splits_restarts():
    records = [{"step": s, "restart": r, "iou": 0.1 * s} for r in (0, 1) for s in (1, 2)]
    labels = sorted(line.get_label() for line in viz.curves_figure(records, keys=("iou",)).axes[0].get_lines())
    assert labels == ["val/iou (restart 0)", "val/iou (restart 1)"]


def test_figures_render_to_png(model):
    png = viz.figure_to_png(viz.redraw_figure(model, images(1), n_z=1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_runs_figure_one_line_per_run_and_colour_per_setting():
    from redo_lib.viz import compare_runs_figure

    run = lambda scale: [{"event": "start"}] + [{"seconds": 60.0 * m, "iou": scale * m / 10} for m in (1, 5, 10)]  # noqa: E731
    fig = compare_runs_figure({"a seed0": run(0.5), "a seed1": run(0.6), "b seed0": run(0.9), "empty": []},
                              baselines={"k-means": 0.6})
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("a seed0", "a seed1", "b seed0")]
    assert len(lines) == 3
    assert list(lines[0].get_xdata()) == [1.0, 5.0, 10.0]  # minutes
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert lines[0].get_linestyle() == lines[2].get_linestyle() != lines[1].get_linestyle()  # seeds apart
    assert any(abs(line.get_ydata()[0] - 0.6) < 1e-9 for line in ax.get_lines() if line.get_linestyle() == "--")


def _diagram_texts(fig):
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def _diagram_box_colour(fig, gid):
    (patch,) = [p for p in fig.axes[0].patches if p.get_gid() == gid]
    return tuple(patch.get_facecolor())


def test_method_diagram_draws_every_part_of_the_method():
    from matplotlib.figure import Figure

    fig = viz.method_diagram()
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    texts = _diagram_texts(fig)
    joined = "\n".join(texts)
    for label in ("image\n$I$", "mask network\n$F$", "$K$ soft masks", "generator\n$G_k(M_k, z_k)$",
                  "composite $I^{(k)}$", r"$M_k \odot G_k + (1 - M_k) \odot I$", r"$z_k \sim \mathcal{N}(0, I)$",
                  "discriminator\n$D$", "hinge loss", "adversarial loss", "information\nnetwork $\\delta$",
                  "fully generated image", "information loss", r"$\lambda_z\, \mathrm{mean}((\delta - z)^2)$",
                  "real image $I$", "for each region"):
        assert label in joined, f"no text {label!r} in the diagram: {texts}"
    gids = {p.get_gid() for p in fig.axes[0].patches}
    assert {gid for part in viz.DIAGRAM_PARTS.values() for gid in part} <= gids
    assert viz.figure_to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"  # every label is valid mathtext


@pytest.mark.parametrize("part", sorted(viz.DIAGRAM_PARTS))
def test_method_diagram_highlight_colours_only_the_named_part(part):
    plain, marked = viz.method_diagram(), viz.method_diagram(highlight=part)
    named = set(viz.DIAGRAM_PARTS[part])
    for gid in {gid for boxes in viz.DIAGRAM_PARTS.values() for gid in boxes} | {"I", "composite", "z", "full"}:
        changed = _diagram_box_colour(plain, gid) != _diagram_box_colour(marked, gid)
        assert changed == (gid in named), (part, gid)


def test_method_diagram_highlight_several_parts_and_draw_into_given_axes():
    from matplotlib.figure import Figure

    host = Figure()
    ax = host.subplots()
    assert viz.method_diagram(ax=ax, highlight=("D", "delta")) is host
    plain = viz.method_diagram()
    for gid in ("D", "delta"):
        assert _diagram_box_colour(host, gid) != _diagram_box_colour(plain, gid)
    assert _diagram_box_colour(host, "F") == _diagram_box_colour(plain, "F")


def test_method_diagram_rejects_an_unknown_part():
    with pytest.raises(ValueError, match=r"unknown part 'Q'.*valid: F, G, D, delta, losses"):
        viz.method_diagram(highlight="Q")
    with pytest.raises(ValueError, match=r"unknown part 'generator'"):
        viz.method_diagram(highlight=["F", "generator"])


def test_error_map_colours_and_mask_errors_figure_picks_the_better_polarity():
    from redo_lib.viz import error_map, mask_errors_figure

    truth = torch.zeros(1, 1, 4, 4)
    truth[0, 0, :2, :2] = 1
    pred = truth[0, 0].bool().clone()
    pred[2, 2] = True  # one false positive
    pred[0, 0] = False  # one miss
    picture = error_map(pred, truth[0, 0] > 0.5)
    assert picture[2, 2].tolist() == [1, 0, 0] and picture[0, 0].tolist() == [0, 0, 1]
    assert picture[0, 1].tolist() == [0, 1, 0] and picture[3, 3].tolist() == [0, 0, 0]
    region0 = 1 - truth[:, 0]  # region 0 is the background: the figure must flip it
    fig = mask_errors_figure(torch.zeros(1, 3, 4, 4), torch.stack([region0, 1 - region0], 1), truth)
    assert any(ax.get_title() == "IoU 1.00" for ax in fig.axes)
    with pytest.raises(ValueError, match="K = 2"):
        mask_errors_figure(torch.zeros(1, 3, 4, 4), torch.rand(1, 3, 4, 4), truth)


def test_compare_runs_figure_against_iterations():
    from redo_lib.viz import compare_runs_figure

    records = [{"seconds": 60.0, "iteration": 250, "iou": 0.3}, {"seconds": 120.0, "iteration": 500, "iou": 0.5}]
    fig = compare_runs_figure({"a": records}, x="iteration")
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [250, 500]
    assert fig.axes[0].get_xlabel() == "iterations"
    assert fig.axes[0].get_ylim() == (0.0, 1.0)  # a score
    losses = [{"seconds": 60.0, "iteration": 250, "d_loss": 1.9}, {"seconds": 120.0, "iteration": 500, "d_loss": 1.4}]
    ax = compare_runs_figure({"a": losses}, key="d_loss", x="iteration").axes[0]
    assert ax.get_ylim()[1] >= 1.9 and "training average" in ax.get_ylabel()  # a loss is not clipped to [0, 1]
    with pytest.raises(ValueError, match="minutes"):
        compare_runs_figure({"a": records}, x="hours")
