"""Names for the 49 cells of the 7x7 attention/saliency grid laid over a FER-style face crop, and the strongest cells.

The grid is read row-major, like the model's 49 tokens (token i = row i // 7, column i % 7). The names assume the
FER2013 framing that `fer_explain.faces.crop_face` reproduces: a frontal face filling most of the square, eyes in
row 2, nose in rows 3-4, mouth in row 5, chin in row 6 (checked against the mean FER+ validation face, whose eye
centres sit at about x = 0.29 and 0.69, y = 0.33 of the crop and whose mouth sits at about y = 0.72).

Left and right are the VIEWER's: "left eye" is the eye on the left of the picture as it is shown on screen
(anatomically the subject's right eye). Faces that are turned, tilted or framed differently shift these names;
they are a reading aid, not a landmark detector.
"""
from __future__ import annotations

import numpy as np

GRID = 7

# One row per grid row, top to bottom; left to right as the viewer sees the crop.
REGION_NAMES: tuple[tuple[str, ...], ...] = (
    ("top-left corner", "left forehead", "upper forehead (left)", "upper forehead", "upper forehead (right)",
     "right forehead", "top-right corner"),
    ("left temple", "left outer eyebrow", "left inner eyebrow", "between the eyebrows", "right inner eyebrow",
     "right outer eyebrow", "right temple"),
    ("left side of face", "left outer eye", "left eye", "nose bridge", "right eye", "right outer eye",
     "right side of face"),
    ("left cheekbone", "left upper cheek", "below left eye", "nose", "below right eye", "right upper cheek",
     "right cheekbone"),
    ("left jaw side", "left cheek", "left nostril / smile line", "nose tip", "right nostril / smile line",
     "right cheek", "right jaw side"),
    ("left jaw", "left lower cheek", "left mouth corner", "mouth", "right mouth corner", "right lower cheek",
     "right jaw"),
    ("below left jaw", "left jawline", "left chin", "chin", "right chin", "right jawline", "below right jaw"),
)

# Token order (row-major), so REGIONS[i] names token i.
REGIONS: tuple[str, ...] = tuple(name for row in REGION_NAMES for name in row)

SIDE_CONVENTION = "left/right as seen by the viewer"


def strongest_regions(grid, k: int = 3, signed: bool = True, against: bool = False) -> list[tuple[str, float]]:
    """The k cells with the strongest values, as (region name, value), strongest first.

    signed=True: rank by the signed value, so the first cells are the strongest evidence FOR the class
    (with against=True: the most negative cells, the strongest evidence AGAINST it; only negative values are
    returned then). signed=False: rank by magnitude (for maps that are non-negative, such as attention or
    Grad-CAM, this is simply the largest values).
    """
    values = np.asarray(grid, dtype=np.float64)
    if values.shape != (GRID, GRID):
        raise ValueError(f"expected a {GRID}x{GRID} grid, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("the grid holds NaN or infinite values")
    flat = values.reshape(-1)
    if signed and against:
        order = np.argsort(flat, kind="stable")
        order = [i for i in order if flat[i] < 0]
    elif signed:
        order = np.argsort(-flat, kind="stable")
    else:
        order = np.argsort(-np.abs(flat), kind="stable")
    return [(REGIONS[i], float(flat[i])) for i in list(order)[:max(k, 0)]]


def describe_regions(grid, k: int = 3, signed: bool = True) -> str:
    """One Markdown line naming the strongest cells, e.g. "for: mouth (+0.12), ...; against: chin (-0.03), ..."."""
    def fmt(items):
        return ", ".join(f"{name} ({value:+.3g})" if signed else f"{name} ({value:.3g})" for name, value in items)

    if not signed:
        return f"strongest: {fmt(strongest_regions(grid, k, signed=False))}"
    positive = [(n, v) for n, v in strongest_regions(grid, k, signed=True) if v > 0]
    negative = strongest_regions(grid, k, signed=True, against=True)
    return (f"for: {fmt(positive) or 'none'}; against: {fmt(negative) or 'none'}")
