"""`python -m training.prior_correction`: tau is chosen on val only, tau = 0 is the model as `evaluate` measures it,
the chosen tau really moves predictions towards rare classes, and bad input is one clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_explain.classes import CLASSES
from fer_explain.errors import UserError
from test_training import run_module, write_ferplus_npz
from fer_explain.decision import training_prior
from training.prior_correction import adjusted_predictions, choose_tau, tau_grid

PRIOR = np.array([0.5, 0.3, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01])


def imbalanced_probabilities(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A model that multiplied the true class's evidence by the prior: rare classes are seldom predicted."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    evidence = rng.random((n, len(CLASSES))) + 2.0 * np.eye(len(CLASSES))[labels]
    probabilities = evidence * PRIOR
    return probabilities / probabilities.sum(1, keepdims=True), labels


def mean_class_accuracy(predictions, labels) -> float:
    return float(np.mean([(predictions[labels == c] == c).mean() for c in np.unique(labels)]))


def test_tau_zero_is_argmax_and_the_val_choice_rebalances_the_classes():
    probabilities, labels = imbalanced_probabilities(4000, 0)
    assert (adjusted_predictions(probabilities, PRIOR, 0.0) == probabilities.argmax(1)).all()
    tau, curve = choose_tau(probabilities, labels, PRIOR, tau_grid(2.0, 0.1))
    assert len(curve) == 21 and curve[0]["tau"] == 0.0 and curve[-1]["tau"] == 2.0
    # the evidence was scaled by the prior exactly once, so dividing it out (tau = 1) is the balanced decision
    assert tau == pytest.approx(1.0, abs=0.15)
    best = max(point["mean_class_accuracy"] for point in curve)
    assert mean_class_accuracy(adjusted_predictions(probabilities, PRIOR, tau), labels) == pytest.approx(best)
    assert best > curve[0]["mean_class_accuracy"] + 0.2


def test_ties_go_to_the_smaller_tau():
    flat = np.full((8, len(CLASSES)), 1 / len(CLASSES))  # every tau predicts the same: the first one is kept
    assert choose_tau(flat, np.zeros(8, dtype=int), np.full(len(CLASSES), 1 / len(CLASSES)), [0.0, 0.5, 1.0])[0] == 0


def test_the_prior_comes_from_the_checkpoints_training_counts():
    counts = dict.fromkeys(CLASSES, 10) | {"neutral": 70, "contempt": 0}
    prior = training_prior({"data": {"train": {"class_counts": counts}}}, "m.safetensors")
    assert prior.sum() == pytest.approx(1.0) and prior[0] == pytest.approx(70 / 130) and prior[-1] == 0
    with pytest.raises(UserError, match="training class counts"):
        training_prior({"validation": {}}, "m.safetensors")
    with pytest.raises(UserError, match="tau-step"):
        tau_grid(1.0, 0.0)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model

    root = tmp_path_factory.mktemp("prior_correction")
    data = write_ferplus_npz(root / "data", {"train_0": 1, "val": 3, "test": 2})
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", variant="full", lstm_hidden=32, head_hidden=32)).eval()
    counts = dict.fromkeys(CLASSES, 5) | {"neutral": 500}
    checkpoint = save_checkpoint(root / "tiny.safetensors", model, Preprocessing(),
                                 {"data": {"train": {"class_counts": counts}}})
    bare = save_checkpoint(root / "bare.safetensors", model, Preprocessing(), {})
    done = run_module("training.prior_correction", "--checkpoints", str(checkpoint), "--data", str(data),
                      "--tau-max", "1", "--tau-step", "0.25", "--out", str(root / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    return root, checkpoint, bare, data, json.loads((root / "out/prior_correction.json").read_text())


def test_the_command_reports_evaluates_figures_at_tau_zero_and_writes_its_tables(tiny_study):
    from fer_explain.data import load_split
    from fer_explain.evaluate import evaluation_record, load_classifier

    root, checkpoint, _, data, result = tiny_study
    (m,) = result["models"]
    record = evaluation_record(load_classifier(checkpoint, torch.device("cpu")), load_split(data, "test"),
                               torch.device("cpu"), 32, False, str(data), "test", progress=False)
    assert m["test"]["as_trained"]["accuracy"] == pytest.approx(record["accuracy"])
    assert m["test"]["as_trained"]["mean_class_accuracy"] == pytest.approx(record["mean_class_accuracy"])
    assert [p["tau"] for p in m["val_curve"]] == [0.0, 0.25, 0.5, 0.75, 1.0] and m["tau"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    best = max(p["mean_class_accuracy"] for p in m["val_curve"])
    assert m["val"]["balanced"]["mean_class_accuracy"] == pytest.approx(best)
    assert m["prior"]["neutral"] == pytest.approx(500 / 535)
    table = (root / "out/prior_correction.md").read_text()
    assert "| mobilenet_v2" not in table and "| resnet18 Bi-LSTM | balanced |" in table
    assert "(val has 3 neutral and 3 happy faces)" in table  # the rarest classes present, named from the data
    assert (root / "out/prior_correction.png").stat().st_size > 1000


def test_a_calibrated_checkpoint_is_corrected_on_the_probabilities_it_shows(tiny_study, tmp_path):
    """tau acts on softmax(z / T), as in the app and `evaluate`: the study's test figures at its tau are evaluate's."""
    from fer_explain.checkpoint import read_metadata, rewrite_metadata
    from fer_explain.data import load_split
    from fer_explain.evaluate import evaluation_record, load_classifier

    root, checkpoint, _, data, _ = tiny_study
    # a random-init model's logits differ by hundredths: T = 0.01 makes them count against tau log pi, and a prior
    # of unequal counts gives each class its own boost
    counts = dict(zip(CLASSES, [400, 300, 100, 40, 20, 10, 5, 2]))
    meta = {**read_metadata(checkpoint), "data": {"train": {"class_counts": counts}}}
    as_trained = rewrite_metadata(checkpoint, meta, tmp_path / "as_trained.safetensors")
    calibrated = rewrite_metadata(checkpoint, {**meta, "calibration": {"temperature": 0.01}},
                                  tmp_path / "calibrated.safetensors")
    curves = {}
    for name, path in (("as_trained", as_trained), ("calibrated", calibrated)):
        done = run_module("training.prior_correction", "--checkpoints", str(path), "--data", str(data),
                          "--tau-max", "1", "--tau-step", "0.25", "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr[-3000:]
        (m,) = json.loads((tmp_path / name / "prior_correction.json").read_text())["models"]
        curves[name] = [(p["accuracy"], p["mean_class_accuracy"]) for p in m["val_curve"]]
    assert curves["as_trained"] != curves["calibrated"]  # the same grid of tau decides otherwise
    assert m["temperature"] == 0.01 and "resnet18 Bi-LSTM T = 0.01 (1: as trained)" in \
        (tmp_path / "calibrated/prior_correction.md").read_text()
    for tau, key in ((0.0, "as_trained"), (m["tau"], "balanced")):
        record = evaluation_record(load_classifier(calibrated, torch.device("cpu")), load_split(data, "test"),
                                   torch.device("cpu"), 32, False, str(data), "test", progress=False,
                                   prior_correction=tau)
        assert m["test"][key]["accuracy"] == pytest.approx(record["accuracy"])
        assert m["test"][key]["mean_class_accuracy"] == pytest.approx(record["mean_class_accuracy"])


def test_bad_input_is_one_clear_error(tiny_study, tmp_path):
    root, checkpoint, bare, data, _ = tiny_study
    for argv, message in ((["--checkpoints", str(checkpoint), str(bare)], "training class counts"),
                          (["--checkpoints", str(tmp_path / "missing.safetensors")], "missing.safetensors"),
                          (["--checkpoints", str(checkpoint), "--tau-step", "0"], "--tau-step"),
                          (["--checkpoints", str(checkpoint), "--batch-size", "0"], "--batch-size")):
        done = run_module("training.prior_correction", *argv, "--data", str(data), "--out", str(tmp_path / "o"))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
