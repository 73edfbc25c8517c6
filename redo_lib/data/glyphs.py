"""Digits rasterised from a font that ships with matplotlib (the synthetic digits data sets).

The paper's Colored-2-MNIST toy pastes MNIST digits; the ``digits-*`` synthetic data sets
draw digits from the outlines of the bold DejaVu Sans font instead, so they need no
download: each digit's outline is taken once with :class:`matplotlib.textpath.TextPath`,
then, for every image, placed by an affine map (size, rotation, shear, position) and
rasterised exactly at pixel centres with :meth:`matplotlib.path.Path.contains_points`.
"""
from __future__ import annotations

import functools
from typing import Tuple

import numpy as np

__all__ = ["FONT_FAMILY", "FontNotFoundError", "digit_outline", "rasterise_digits"]

#: the font the digits are drawn from (bundled with every matplotlib installation)
FONT_FAMILY = "DejaVu Sans"


class FontNotFoundError(RuntimeError):
    """The digit font (or matplotlib itself) is missing."""


@functools.lru_cache(maxsize=None)
def _font_properties():
    try:
        from matplotlib.font_manager import FontProperties, findfont
    except ImportError as error:  # pragma: no cover - matplotlib is a dependency
        raise FontNotFoundError(
            "the digits data sets draw digits with matplotlib's fonts: pip install matplotlib"
        ) from error
    properties = FontProperties(family=FONT_FAMILY, weight="bold")
    try:
        findfont(properties, fallback_to_default=False)
    except ValueError as error:
        raise FontNotFoundError(
            f"the digits data sets need the font {FONT_FAMILY!r} (bold), which ships with "
            f"matplotlib; it was not found: reinstall matplotlib (pip install --force-reinstall "
            f"matplotlib) or install the DejaVu fonts (Debian: apt-get install fonts-dejavu-core)"
        ) from error
    return properties


@functools.lru_cache(maxsize=None)
def digit_outline(digit: int):
    """The outline of ``digit`` as a :class:`matplotlib.path.Path`, centred, 1 unit high."""
    if not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    from matplotlib.path import Path
    from matplotlib.textpath import TextPath

    path = TextPath((0, 0), str(int(digit)), size=1.0, prop=_font_properties())
    box = path.get_extents()
    centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
    # y up in font units, y down in images: flip so the digit stands upright in an image
    vertices = (path.vertices - centre) / box.height * np.array([1.0, -1.0])
    return Path(vertices, path.codes)


@functools.lru_cache(maxsize=None)
def _contours(digit: int) -> Tuple[np.ndarray, ...]:
    """The closed contours of the outline, curves flattened to polygons.

    ``Path.contains_points`` on the whole outline ignores the holes of 0, 4, 6, 8 and 9;
    a point is inside the glyph when an odd number of contours contain it (even-odd rule).
    """
    return tuple(digit_outline(digit).to_polygons(closed_only=True))


def rasterise_digits(size: int, digits: np.ndarray, centre: np.ndarray, height: np.ndarray,
                     rotation: np.ndarray, shear: np.ndarray, stretch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Digit masks and a shape field for a batch.

    Args (arrays of length B; lengths in fractions of the image side):
        size: the image side S.
        digits: the digit (0-9) of each image.
        centre: (B, 2) the digit's centre (x, y).
        height: the digit's height before rotation.
        rotation: angle in radians.
        shear: horizontal shear (x += shear * y, in the digit's frame).
        stretch: width multiplier (1: the font's own proportions).

    Returns:
        ``inside`` (B, S, S) bool, the pixels whose centre lies in the digit, and ``level``
        (B, S, S) float32, the distance from the digit's centre in half-heights (0 at the
        centre, about 1 at the top and bottom), used by the textures that follow the shape.
    """
    from matplotlib.path import Path
    from matplotlib.transforms import Affine2D

    centres = (np.arange(size) + 0.5) / size
    px, py = np.meshgrid(centres, centres)
    points = np.stack([px.ravel(), py.ravel()], 1)
    b = len(digits)
    inside = np.empty((b, size, size), dtype=bool)
    level = np.empty((b, size, size), dtype=np.float32)
    for i in range(b):
        transform = (Affine2D().scale(float(stretch[i]) * float(height[i]), float(height[i]))
                     .skew(float(shear[i]), 0.0).rotate(float(rotation[i]))
                     .translate(float(centre[i, 0]), float(centre[i, 1])))
        hit = np.zeros(len(points), dtype=bool)
        for contour in _contours(int(digits[i])):
            hit ^= Path(transform.transform(contour)).contains_points(points)
        inside[i] = hit.reshape(size, size)
        radius = np.hypot(px - centre[i, 0], py - centre[i, 1]) / (0.5 * float(height[i]))
        level[i] = radius
    return inside, level
