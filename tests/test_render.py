"""Rendered pictures are uint8 RGB of the expected shape, depend on their input, and render from threads."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from fer_explain.classes import CLASSES
from fer_explain.faces import FaceBox
from fer_explain.render import (annotate_image, explanation_panel, grid_figure, overlay_heatmap, probability_bars,
                                timeline_plot)


def _rgb(a):
    return isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3


@pytest.fixture
def display():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)


def test_overlay(display):
    rng = np.random.default_rng(1)
    g1, g2 = rng.random((7, 7)), rng.random((7, 7))
    a, b = overlay_heatmap(display, g1), overlay_heatmap(display, g2)
    assert _rgb(a) and a.shape == display.shape and not np.array_equal(a, b)
    signed = overlay_heatmap(display, g1 - 0.5, signed=True)
    assert _rgb(signed) and not np.array_equal(signed, a)
    # hot cell top-left, cold elsewhere: 'jet' is red there, blue far away
    hot = np.zeros((7, 7))
    hot[0, 0] = 1.0
    plain = overlay_heatmap(np.zeros((224, 224, 3), np.uint8), hot, alpha=1.0)
    assert plain[5, 5, 0] > 100 > plain[5, 5, 2] and plain[200, 200, 2] > 100 > plain[200, 200, 0]
    # a signed map's zero is the diverging map's white, negative blue, positive red
    sign = np.zeros((7, 7))
    sign[0, 0], sign[6, 6] = 1.0, -1.0
    s = overlay_heatmap(np.zeros((224, 224, 3), np.uint8), sign, signed=True, alpha=1.0)
    assert s[5, 5, 0] > s[5, 5, 2] and s[218, 218, 2] > s[218, 218, 0] and s[112, 112].min() > 200
    assert _rgb(overlay_heatmap(display, np.zeros((7, 7))))  # an all-zero map is no error


def test_grid_bars_timeline():
    rng = np.random.default_rng(2)
    g1, g2 = rng.normal(size=(7, 7)), rng.normal(size=(7, 7))
    a, b = grid_figure(g1, True, "saliency"), grid_figure(g2, True, "saliency")
    assert _rgb(a) and a.shape == b.shape and not np.array_equal(a, b)
    # the cells are coloured as the overlays are: +1 top-left red, -1 bottom-right blue, 0 white (cell corners,
    # away from the numbers); the signed map's zero is the diverging map's white
    sign = np.zeros((7, 7))
    sign[0, 0], sign[6, 6] = 1.0, -1.0
    cell = 40
    s = grid_figure(sign, True, "signed", cell=cell)
    top_left = np.argwhere((s[..., 0] > 100) & (s[..., 2] < 80))  # red pixels: the +1 cell only (and its scale)
    y, x = top_left.min(0) + 3
    red, blue = s[y, x].astype(int), s[y + 6 * cell, x + 6 * cell].astype(int)
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    assert s[y + 3 * cell, x + 3 * cell].min() > 200
    p = rng.dirichlet(np.ones(8))
    bars = probability_bars(p, CLASSES, highlight="happy")
    assert _rgb(bars) and not np.array_equal(bars, probability_bars(p, CLASSES, highlight="sad"))
    t = np.arange(12) / 4
    line = timeline_plot(t, rng.dirichlet(np.ones(8), len(t)), CLASSES)
    assert _rgb(line) and line.shape[1] > line.shape[0]
    assert _rgb(timeline_plot([], np.zeros((0, 8)), CLASSES))


def test_annotate_image():
    image = np.full((240, 320, 3), 40, np.uint8)
    boxes = [FaceBox(20, 60, 100, 140, 1.0), (180, 10, 260, 90)]
    out = annotate_image(image, boxes, ["happy 0.87", "sad 0.51"])
    assert _rgb(out) and out.shape == image.shape and not np.array_equal(out, image)
    assert (out[100, 20] != 40).any() and (out[200, 300] == 40).all()  # box edge drawn, far corner untouched
    assert not np.array_equal(out, annotate_image(image, boxes, ["anger 0.99", "sad 0.51"]))


def _explanation(seed):
    rng = np.random.default_rng(seed)
    item = lambda grid, signed: SimpleNamespace(grid=grid.astype(np.float32), signed=signed)  # noqa: E731
    maps = {"spatial_attention": item(rng.random((7, 7)), False), "token_saliency": item(rng.normal(size=(7, 7)), True),
            "gradcam": item(rng.random((7, 7)), False)}
    p = rng.dirichlet(np.ones(8)).astype(np.float32)
    prediction = SimpleNamespace(probabilities=p, label=CLASSES[int(p.argmax())], label_index=int(p.argmax()))
    explanation = SimpleNamespace(target="happy", target_index=1, maps=maps,
                                  faithfulness={"gradcam": {"deletion_auc": 0.2, "insertion_auc": 0.7}})
    return prediction, explanation


def test_explanation_panel(display):
    a = explanation_panel(display, *_explanation(0), CLASSES)
    b = explanation_panel(display, *_explanation(1), CLASSES)
    assert _rgb(a) and a.shape == b.shape and a.shape[1] > a.shape[0] and not np.array_equal(a, b)
    prediction, explanation = _explanation(0)
    prediction.prior_correction = 0.7  # the same bars, now titled as reweighted ones
    corrected = explanation_panel(display, prediction, explanation, CLASSES)
    assert corrected.shape == a.shape and not np.array_equal(corrected, a)
    prediction.prior_correction = 0.0
    assert np.array_equal(explanation_panel(display, prediction, explanation, CLASSES), a)


def test_rendering_from_four_threads_matches_sequential(display):
    grids = [np.random.default_rng(s).normal(size=(7, 7)) for s in range(4)]

    def job(i):
        return (grid_figure(grids[i], True, f"grid {i}"), overlay_heatmap(display, grids[i], signed=True),
                explanation_panel(display, *_explanation(i), CLASSES))

    sequential = [job(i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(job, range(4)))
    for seq, par in zip(sequential, parallel):
        assert all(np.array_equal(s, p) for s, p in zip(seq, par))
