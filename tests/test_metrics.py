"""Metrics against hand-computed cases, the text tables, the confusion PNG, calibration (ECE and its
reliability PNG), and the analytic LSTM FLOPs."""
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fer_explain.classes import CLASSES
from fer_explain.confusion_plot import save_confusion_png
from fer_explain.cost import lstm_flops
from fer_explain.metrics import compute_metrics, format_metrics

TOY = ("a", "b", "c")


def test_three_class_toy_matches_hand_computation():
    # true a a a b b c ; pred a a b b c c
    # a: TP 2, predicted 2, support 3 -> P 1, R 2/3, F1 0.8
    # b: TP 1, predicted 2, support 2 -> P 1/2, R 1/2, F1 1/2
    # c: TP 1, predicted 2, support 1 -> P 1/2, R 1, F1 2/3
    m = compute_metrics(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), TOY)
    assert m["n"] == 6 and m["classes"] == list(TOY)
    assert m["accuracy"] == pytest.approx(4 / 6)
    pc = m["per_class"]
    assert (pc["a"]["precision"], pc["a"]["recall"], pc["a"]["f1"]) == pytest.approx((1, 2 / 3, 0.8))
    assert (pc["b"]["precision"], pc["b"]["recall"], pc["b"]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (pc["c"]["precision"], pc["c"]["recall"], pc["c"]["f1"]) == pytest.approx((0.5, 1, 2 / 3))
    assert [pc[c]["support"] for c in TOY] == [3, 2, 1]
    assert m["macro_precision"] == pytest.approx(2 / 3)
    assert m["macro_recall"] == m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_recall"] == pytest.approx(m["accuracy"])  # support-weighted recall is accuracy
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_confusion_rows_are_true_class():
    # every true "a" predicted as "c": the count sits in row a, column c
    m = compute_metrics(np.array([0, 0, 1]), np.array([2, 2, 1]), TOY)
    assert m["confusion_matrix"][0] == [0, 0, 2]
    assert m["confusion_matrix"][2] == [0, 0, 0]
    assert m["confusion_matrix_normalized"][0] == pytest.approx([0, 0, 1])


def test_absent_class_is_left_out_of_macro_but_its_predictions_are_errors():
    # "c" never occurs in y_true; one "a" is predicted as "c"
    m = compute_metrics(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), TOY)
    assert m["evaluated_classes"] == ["a", "b"] and m["missing_classes"] == ["c"]
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["mean_class_accuracy"] == pytest.approx((1 / 2 + 1) / 2)  # over a and b only, not /3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0}
    assert m["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0]
    for row in m["confusion_matrix_normalized"][:2]:
        assert sum(row) == pytest.approx(1)


def test_perfect_predictions_on_all_eight_classes():
    y = np.repeat(np.arange(len(CLASSES)), 3)
    m = compute_metrics(y, y.copy())
    for key in ("accuracy", "mean_class_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"):
        assert m[key] == pytest.approx(1.0), key
    assert np.array_equal(np.array(m["confusion_matrix"]), 3 * np.eye(len(CLASSES), dtype=int))
    assert m["missing_classes"] == [] and m["classes"] == list(CLASSES)


def test_random_predictions_give_fractions_and_a_readable_table():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 200), rng.integers(0, 8, 200)  # no contempt in y
    m = compute_metrics(y, p)
    assert np.array(m["confusion_matrix"]).shape == (8, 8) and np.array(m["confusion_matrix"]).sum() == 200
    for key in ("accuracy", "macro_f1", "weighted_precision"):
        assert 0 <= m[key] <= 1
    text = format_metrics(m)
    assert "contempt" in text and "row %" in text and f"{100 * m['accuracy']:.1f}" in text


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 1]), np.array([0]), TOY)
    with pytest.raises(ValueError):
        compute_metrics(np.array([0, 3]), np.array([0, 1]), TOY)
    with pytest.raises(ValueError):
        compute_metrics(np.array([], dtype=int), np.array([], dtype=int), TOY)


def test_confusion_png_is_written(tmp_path):
    m = compute_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]))
    path = save_confusion_png(tmp_path / "cm.png", m["confusion_matrix"], CLASSES, "toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_lstm_flops_matches_hand_computation():
    # input 3, hidden 2, 2 layers, 5 steps, bidirectional:
    # layer 0: 4*2*(3+2) = 40 MACs per step and direction; layer 1 input is 2*2 = 4: 4*2*(4+2) = 48
    # total MACs = 5 steps * 2 directions * (40 + 48) = 880 -> 1760 FLOPs
    assert lstm_flops(3, 2, 2, 5, bidirectional=True) == 1760
    # one direction: layer 1 input is 2: 5 * (40 + 4*2*(2+2)) = 360 MACs -> 720 FLOPs
    assert lstm_flops(3, 2, 2, 5, bidirectional=False) == 720


def test_flop_counter_sees_nothing_in_an_lstm():
    """Why the analytic part exists: FlopCounterMode counts 0 for nn.LSTM but does count the same matmuls."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(16, 8, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        lstm(torch.randn(1, 7, 16))
    assert counter.get_total_flops() == 0
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        torch.nn.functional.linear(torch.randn(1, 16), lstm.weight_ih_l0)  # one step's input projection
    assert counter.get_total_flops() == 2 * 4 * 8 * 16


def test_calibration_against_hand_computed_bins():
    from fer_explain.calibration import calibration_metrics

    # 4 images, 2 classes, 2 bins (0, 0.5] and (0.5, 1]: confidences 0.9, 0.9 (one right), 0.6, 0.6 (both right)
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    c = calibration_metrics(p, y, n_bins=2)
    assert [b["count"] for b in c["bins"]] == [0, 4] and c["bins"][0]["accuracy"] is None
    assert c["bins"][1]["confidence"] == pytest.approx(0.75) and c["bins"][1]["accuracy"] == pytest.approx(0.75)
    assert c["ece"] == pytest.approx(0.0) and c["accuracy"] == 0.75
    c = calibration_metrics(p, y, n_bins=10)  # bins (0.8, 0.9] and (0.5, 0.6]: |0.5 - 0.9| and |1 - 0.6|
    assert c["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4) and c["mce"] == pytest.approx(0.4)
    assert c["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.6])))
    assert c["brier"] == pytest.approx(np.mean([0.02, 1.62, 0.32, 0.32]))
    # a confidence of exactly 1 lands in the top bin, not past it
    assert calibration_metrics(np.array([[1.0, 0.0]]), np.array([0]))["bins"][-1]["count"] == 1


def test_calibration_is_near_zero_when_probabilities_come_true_and_grows_when_overconfident(tmp_path):
    from fer_explain.calibration import calibration_metrics, save_reliability_png

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20_000)
    p = np.stack([confidence, 1 - confidence], 1)
    honest = np.where(rng.uniform(size=confidence.size) < confidence, 0, 1)  # right as often as it says
    assert calibration_metrics(p, honest)["ece"] < 0.01
    coin = rng.integers(0, 2, confidence.size)  # right half of the time, however sure it says it is
    assert calibration_metrics(p, coin)["ece"] == pytest.approx(confidence.mean() - 0.5, abs=0.01)
    png = save_reliability_png(tmp_path / "r.png", calibration_metrics(p, honest), "honest")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
