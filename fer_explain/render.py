"""Pictures of predictions and explanations as uint8 RGB arrays: heat-map overlays, the 7x7 token grid with its
values, probability bars, annotated photos, one explanation panel per face and video emotion timelines.

Built with numpy, PIL and matplotlib's object API on its Agg canvas (never pyplot): each call makes its own
Figure and keeps no global state, so rendering from many threads at once is safe.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

UNSIGNED_CMAP = "jet"  # non-negative maps: attention weights, Grad-CAM
SIGNED_CMAP = "RdBu_r"  # signed maps, centred on 0: red = evidence for the class, blue = against
DPI = 100
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601 weights: cells darker than mid-grey get white text


def normalise_grid(grid: np.ndarray, signed: bool) -> np.ndarray:
    """Signed: v / max|v| in [-1, 1], sign kept; unsigned: v / max in [0, 1]. All-zero stays zero; NaN counts as 0."""
    g = np.nan_to_num(np.asarray(grid, dtype=np.float32))
    if signed:
        peak = float(np.abs(g).max(initial=0.0))
    else:
        g = np.clip(g, 0.0, None)
        peak = float(g.max(initial=0.0))
    return g / peak if peak > 0 else np.zeros_like(g)


def _colours(values: np.ndarray, signed: bool, cmap: str | None) -> np.ndarray:
    """Colormap lookup of normalised values -> float RGB in [0, 1]."""
    from matplotlib import colormaps
    lut = colormaps[cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP)]
    return lut((values + 1) / 2 if signed else values)[..., :3]


def overlay_heatmap(display_rgb: np.ndarray, grid7x7: np.ndarray, signed: bool = False, alpha: float = 0.45,
                    cmap: str | None = None) -> np.ndarray:
    """The grid upsampled bilinearly to the crop, coloured, and blended over it: uint8 RGB of the crop's shape."""
    display = np.asarray(display_rgb, dtype=np.uint8)
    if display.ndim == 2:
        display = np.stack([display] * 3, -1)
    h, w = display.shape[:2]
    values = normalise_grid(grid7x7, signed)
    # PIL resizes float ("F") images; bilinear keeps the cells' values at their centres
    smooth = np.asarray(Image.fromarray(values).resize((w, h), Image.Resampling.BILINEAR))
    colour = _colours(np.clip(smooth, -1.0, 1.0), signed, cmap) * 255.0
    return np.clip((1 - alpha) * display[..., :3] + alpha * colour, 0, 255).round().astype(np.uint8)


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _draw_grid(ax, grid: np.ndarray, signed: bool, title: str) -> None:
    g = np.nan_to_num(np.asarray(grid, dtype=np.float32))
    scale = float(np.abs(g).max(initial=0.0))
    if signed:
        image = ax.imshow(g, cmap=SIGNED_CMAP, vmin=-(scale or 1.0), vmax=scale or 1.0)
    else:
        image = ax.imshow(g, cmap=UNSIGNED_CMAP, vmin=0.0, vmax=float(g.max(initial=0.0)) or 1.0)
    luma = image.cmap(image.norm(g))[..., :3] @ LUMA
    for (r, c), v in np.ndenumerate(g):
        ax.text(c, r, f"{v:.2f}" if scale >= 0.01 else f"{v:.0e}", ha="center", va="center", fontsize=6.5,
                color="white" if luma[r, c] < 0.5 else "black")
    ax.set_xticks(range(g.shape[1]))
    ax.set_yticks(range(g.shape[0]))
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)


def grid_figure(grid7x7: np.ndarray, signed: bool, title: str, cell: int = 54) -> np.ndarray:
    """The grid as coloured cells with their values written in them (row-major = token order), row and column
    numbers, and a colour scale; the same colours and number format as the matplotlib grid of the panel.

    Drawn with PIL rather than matplotlib: the app draws two of these per Explain request, and matplotlib's layout
    and text rendering of the 49 labels were the largest cost outside torch (README, benchmarks/app_latency.py:
    /analyze median 1.38-1.47 s before, 1.13-1.28 s after, on 2 CPU cores).
    """
    g = np.nan_to_num(np.asarray(grid7x7, dtype=np.float32))
    scale = float(np.abs(g).max(initial=0.0))
    colours = (_colours(normalise_grid(g, signed), signed, None) * 255).round().astype(np.uint8)
    rows, cols = g.shape
    font = ImageFont.load_default(size=max(9, cell // 5))
    title_font = ImageFont.load_default(size=max(11, cell // 4))
    pad, bar = cell // 2, cell // 4
    grid_w, grid_h = cols * cell, rows * cell
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_w = probe.textbbox((0, 0), title, font=title_font)[2]
    top = 2 * pad
    width = max(pad + grid_w + pad // 2 + bar + 2 * pad + cell // 2, title_w + pad)
    im = Image.new("RGB", (width, top + grid_h + pad), "white")
    draw = ImageDraw.Draw(im)
    draw.text((width // 2, pad // 2), title, fill="black", font=title_font, anchor="mt")
    for (r, c), v in np.ndenumerate(g):
        x, y = pad + c * cell, top + r * cell
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(int(k) for k in colours[r, c]))
        dark = colours[r, c] @ LUMA < 128
        draw.text((x + cell // 2, y + cell // 2), f"{v:.2f}" if scale >= 0.01 else f"{v:.0e}",
                  fill="white" if dark else "black", font=font, anchor="mm")
    for k in range(max(rows, cols)):
        if k < cols:
            draw.text((pad + k * cell + cell // 2, top - 2), str(k), fill="black", font=font, anchor="md")
        if k < rows:
            draw.text((pad - 4, top + k * cell + cell // 2), str(k), fill="black", font=font, anchor="rm")
    # colour scale, top = the largest value shown
    low, high = (-(scale or 1.0), scale or 1.0) if signed else (0.0, float(g.max(initial=0.0)) or 1.0)
    x0 = pad + grid_w + pad // 2
    ramp = np.linspace(1.0, -1.0 if signed else 0.0, grid_h, dtype=np.float32)
    strip = (_colours(ramp, signed, None) * 255).round().astype(np.uint8)
    im.paste(Image.fromarray(np.repeat(strip[:, None, :], bar, axis=1)), (x0, top))
    for value, y, anchor in ((high, top, "lt"), ((low + high) / 2, top + grid_h // 2, "lm"),
                             (low, top + grid_h, "lb")):
        draw.text((x0 + bar + 3, y), f"{value:.2g}", fill="black", font=font, anchor=anchor)
    return np.asarray(im)


def _highlight_index(highlight, classes: Sequence[str]) -> int | None:
    if highlight is None:
        return None
    if isinstance(highlight, str):
        return list(classes).index(highlight) if highlight in classes else None
    return int(highlight)


def _draw_bars(ax, probabilities, classes: Sequence[str], highlight=None, title: str = "probabilities") -> None:
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    marked = _highlight_index(highlight, classes)
    if marked is None:
        marked = int(p.argmax())
    colours = ["tab:orange" if i == marked else "tab:blue" for i in range(len(p))]
    rows = np.arange(len(p))
    ax.barh(rows, p, color=colours)
    ax.set_yticks(rows, labels=list(classes), fontsize=8)
    ax.invert_yaxis()  # first class on top, as in the class list
    ax.set_xlim(0, 1.15)
    ax.tick_params(axis="x", labelsize=7)
    for i, v in enumerate(p):
        ax.text(min(v, 1.0) + 0.01, i, f"{v:.1%}", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)


def probability_bars(probabilities, classes: Sequence[str], highlight: int | str | None = None) -> np.ndarray:
    """Horizontal bars, one per class; `highlight` (index or name, default the top class) in another colour."""
    fig = _figure(4.6, 3.0)
    _draw_bars(fig.add_subplot(), probabilities, classes, highlight)
    fig.tight_layout()
    return _to_array(fig)


def _box_xyxy(box) -> tuple[int, int, int, int]:
    if hasattr(box, "x0"):
        return int(box.x0), int(box.y0), int(box.x1), int(box.y1)
    x0, y0, x1, y1 = box[:4]
    return int(x0), int(y0), int(x1), int(y1)


def annotate_image(image, boxes: Sequence, labels: Sequence[str] = ()) -> np.ndarray:
    """The photo with a numbered box per face (in the order given: left to right from the detector) and
    "n: label 0.87" above it. `boxes` are FaceBox objects or (x0, y0, x1, y1); returns uint8 RGB."""
    # convert() always returns a new image: the caller's photo is never drawn on, and copied once
    im = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))).convert("RGB")
    draw = ImageDraw.Draw(im)
    line = max(2, round(max(im.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(im.size) / 45)))
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = _box_xyxy(box)
        draw.rectangle((x0, y0, x1, y1), outline=(255, 200, 0), width=line)
        text = f"{i + 1}: {labels[i]}" if i < len(labels) else f"{i + 1}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y0 - th - 2 * line if y0 - th - 2 * line >= 0 else y1 + line  # below the box at the top edge
        tx = min(max(0, x0), max(0, im.width - tw - 2 * line))
        draw.rectangle((tx, ty, tx + tw + 2 * line, ty + th + 2 * line), fill=(255, 200, 0))
        draw.text((tx + line - left, ty + line - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(im)


# panel columns, in order, when the explanation holds them; other methods follow
PANEL_ORDER = ("spatial_attention", "token_saliency", "gradcam", "gradcam++", "token_occlusion")
TITLES = {"spatial_attention": "spatial attention (eq. 2)", "token_saliency": "token saliency (IG)",
          "token_occlusion": "token occlusion", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


def explanation_panel(display_rgb: np.ndarray, prediction, explanation, classes: Sequence[str]) -> np.ndarray:
    """One face's explanation as one picture: the crop and one overlay per map (top row), the signed token grid
    and the class probabilities (bottom row). `prediction` has `.probabilities`, `.label` (and optionally
    `.prior_correction`, named over the bars when not 0); `explanation` has
    `.target`, `.target_index`, `.maps` {method: object with .grid (7,7) and .signed} and optionally
    `.faithfulness` {method: {"deletion_auc", "insertion_auc"}}."""
    maps = dict(explanation.maps)
    methods = [m for m in PANEL_ORDER if m in maps] + [m for m in maps if m not in PANEL_ORDER]
    grid_method = next((m for m in methods if maps[m].signed), methods[0] if methods else None)
    faithfulness = getattr(explanation, "faithfulness", None) or {}
    columns = max(2, 1 + len(methods))
    fig = _figure(2.3 * columns, 5.4)
    spec = fig.add_gridspec(2, columns, height_ratios=(1.0, 1.25))
    probs = np.asarray(prediction.probabilities, dtype=np.float64)
    ax = fig.add_subplot(spec[0, 0])
    ax.imshow(np.asarray(display_rgb, np.uint8))
    ax.set_title(f"{prediction.label} {probs.max():.0%}", fontsize=9)
    ax.axis("off")
    for col, method in enumerate(methods, start=1):
        item = maps[method]
        ax = fig.add_subplot(spec[0, col])
        ax.imshow(overlay_heatmap(display_rgb, item.grid, signed=item.signed))
        title = TITLES.get(method, method)
        if method in faithfulness and "deletion_auc" in faithfulness[method]:
            title += f"\ndel {faithfulness[method]['deletion_auc']:.2f} ins {faithfulness[method]['insertion_auc']:.2f}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    half = columns // 2
    if grid_method is not None:
        _draw_grid(fig.add_subplot(spec[1, :half]), maps[grid_method].grid, maps[grid_method].signed,
                   f"{TITLES.get(grid_method, grid_method)} per token")
    bars_title = f"probabilities (maps explain: {explanation.target})"
    tau = getattr(prediction, "prior_correction", 0.0)
    if tau:  # the bars are the reweighted probabilities: the picture must say so
        bars_title += f"\nafter prior correction τ = {tau:g}"
    _draw_bars(fig.add_subplot(spec[1, half:]), probs, classes, highlight=explanation.target_index, title=bars_title)
    fig.tight_layout()
    return _to_array(fig)


def timeline_plot(times, probabilities, classes: Sequence[str]) -> np.ndarray:
    """Each class's probability over the video's time (seconds): one line per class."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(len(t), -1) if len(t) else np.zeros((0, len(classes)))
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot()
    from matplotlib import colormaps
    palette = colormaps["tab10"]
    for k, name in enumerate(classes):
        ax.plot(t, p[:, k], label=name, color=palette(k % 10), marker="." if len(t) < 60 else None)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("probability", fontsize=8)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title("emotions over time", fontsize=9)
    fig.tight_layout()
    return _to_array(fig)
