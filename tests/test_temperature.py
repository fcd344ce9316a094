"""Temperature scaling: the fitted T undoes a known miscalibration and leaves every decision as it is;
`python -m training.temperature` fits on val only and reports the model as trained beside it; `python -m fer_explain
calibrate` records that T in a checkpoint, after which the Predictor (app, `predict`, `explain`) and `evaluate` show
the calibrated probabilities and the prior correction acts on them; bad input is one clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_explain.calibration import calibration_metrics
from fer_explain.temperature import fit_temperature, temperature_scaled as scaled
from test_training import run_module, write_ferplus_npz


def calibrated_then_softened(n: int, softening: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits), so those probabilities are calibrated; then the logits divided by
    `softening` > 1, which makes the model underconfident, as the shipped pair is."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 8))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(8, p=row) for row in p])
    return scaled(p, softening), labels


def test_the_fitted_temperature_undoes_the_softening_and_moves_no_decision():
    soft, labels = calibrated_then_softened(6000, softening=1.6)
    temperature = fit_temperature(soft, labels)
    assert temperature == pytest.approx(1 / 1.6, rel=0.08)  # scaling by 1/1.6 gives the calibrated logits back
    sharp = scaled(soft, temperature)
    assert (sharp.argmax(1) == soft.argmax(1)).all()
    before, after = calibration_metrics(soft, labels), calibration_metrics(sharp, labels)
    assert after["ece"] < 0.02 < before["ece"] and after["nll"] < before["nll"]
    np.testing.assert_allclose(scaled(soft, 1.0), soft, atol=1e-7)


def test_the_command_fits_on_val_reports_test_at_t_one_as_evaluate_does_and_refuses_bad_input(tmp_path):
    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.data import load_split
    from fer_explain.evaluate import evaluation_record, load_classifier
    from fer_explain.model import build_model

    data = write_ferplus_npz(tmp_path / "data", {"train_0": 1, "val": 3, "test": 2})
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=16, head_hidden=16)).eval()
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", model, Preprocessing(), {})
    done = run_module("training.temperature", "--checkpoints", str(checkpoint), "--data", str(data),
                      "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    (m,) = json.loads((tmp_path / "out/temperature.json").read_text())["models"]
    record = evaluation_record(load_classifier(checkpoint, torch.device("cpu")), load_split(data, "test"),
                               torch.device("cpu"), 32, False, str(data), "test", progress=False)
    assert m["test"]["as_trained"]["ece"] == pytest.approx(record["calibration"]["ece"])
    assert m["test"]["scaled"]["accuracy"] == m["test"]["as_trained"]["accuracy"] == pytest.approx(record["accuracy"])
    assert 0.05 <= m["temperature"] <= 20 and m["val"]["scaled"]["nll"] <= m["val"]["as_trained"]["nll"] + 1e-9
    assert m["recorded_temperature"] == 1  # the file records none: shown as trained
    assert "| resnet18 Bi-LSTM | 1 |" in (tmp_path / "out/temperature.md").read_text()
    for argv, message in ((["--checkpoints", str(tmp_path / "missing.safetensors")], "missing.safetensors"),
                          (["--checkpoints", str(checkpoint), "--batch-size", "0"], "--batch-size")):
        done = run_module("training.temperature", *argv, "--data", str(data), "--out", str(tmp_path / "o"))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def tiny_checkpoint(tmp_path):
    """A random-init resnet18 model that records its training class counts (for the prior correction)."""
    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.classes import CLASSES
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=16, head_hidden=16)).eval()
    counts = dict(zip(CLASSES, [40, 30, 10, 10, 5, 2, 2, 1]))
    return save_checkpoint(tmp_path / "tiny.safetensors", model, Preprocessing(),
                           {"data": {"train": {"class_counts": counts}}})


def test_calibrate_records_the_val_temperature_that_the_predictor_and_evaluate_then_apply(tmp_path):
    from safetensors.torch import load_file

    from fer_explain.checkpoint import read_metadata, rewrite_metadata
    from fer_explain.data import load_split
    from fer_explain.decision import adjust_probabilities, training_prior
    from fer_explain.device import prepare_for_inference
    from fer_explain.errors import UserError
    from fer_explain.evaluate import evaluation_record, file_sha256, load_classifier, predict_probabilities
    from fer_explain.predictor import Predictor

    cpu = torch.device("cpu")
    data = write_ferplus_npz(tmp_path / "data", {"train_0": 1, "val": 3, "test": 2})
    checkpoint, calibrated = tiny_checkpoint(tmp_path), tmp_path / "calibrated.safetensors"
    original = file_sha256(checkpoint)
    done = run_module("fer_explain", "calibrate", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                      str(calibrated), "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    assert file_sha256(checkpoint) == original  # --out leaves the source alone
    ckpt, val = load_classifier(checkpoint, cpu), load_split(data, "val")
    raw_val = predict_probabilities(prepare_for_inference(ckpt.model, cpu), val, ckpt.preprocessing, cpu, 32,
                                    progress=False)
    calibration = read_metadata(calibrated)["calibration"]
    temperature = calibration["temperature"]
    # to the fit's tolerance (xatol 1e-4): the subprocess may sum in another thread order
    assert temperature == pytest.approx(fit_temperature(raw_val, val.labels.numpy()), abs=1e-3)
    assert calibration["split"] == "val" and calibration["data_fingerprint"] == val.fingerprint()
    assert calibration["calibrated"]["nll"] <= calibration["as_trained"]["nll"] and temperature != 1
    assert f"T = {temperature:.3g}, fitted on val (12 images)" in done.stdout and file_sha256(calibrated) in done.stdout
    weights, same = load_file(str(checkpoint)), load_file(str(calibrated))
    assert weights.keys() == same.keys() and all(torch.equal(weights[k], same[k]) for k in weights)

    # calibrating again, in place, fits the model as trained again: the same T, the same bytes (nothing compounded)
    before = file_sha256(calibrated)
    done = run_module("fer_explain", "calibrate", "--checkpoint", str(calibrated), "--data", str(data), "--device",
                      "cpu")
    assert done.returncode == 0 and file_sha256(calibrated) == before, done.stderr[-3000:]

    faces = list(np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8))
    as_trained, shown = Predictor(checkpoint, "cpu").predict(faces), Predictor(calibrated, "cpu").predict(faces)
    for a, b in zip(as_trained, shown):
        np.testing.assert_allclose(b.probabilities, scaled(a.probabilities, temperature), atol=1e-5)
        assert a.label == b.label
    # the prior correction reweights the calibrated probabilities: tau = 1 is the balanced decision on them
    prior = training_prior(read_metadata(calibrated), calibrated)
    for a, b in zip(as_trained, Predictor(calibrated, "cpu").predict(faces, prior_correction=1.0)):
        expected = adjust_probabilities(scaled(a.probabilities, temperature), prior, 1.0)
        np.testing.assert_allclose(b.probabilities, expected, atol=1e-5)
        assert b.label_index == int(expected.argmax())

    test = load_split(data, "test")
    records = [evaluation_record(load_classifier(path, cpu), test, cpu, 32, flip, str(data), "test", progress=False)
               for path in (checkpoint, calibrated) for flip in (False, True)]
    raw_test = predict_probabilities(prepare_for_inference(ckpt.model, cpu), test, ckpt.preprocessing, cpu, 32,
                                     progress=False)
    labels = test.labels.numpy()
    assert records[2]["temperature"] == temperature and records[0]["temperature"] == 1
    assert records[2]["calibration"]["ece"] == pytest.approx(
        calibration_metrics(scaled(raw_test, temperature), labels)["ece"])
    assert records[0]["predictions"] == records[2]["predictions"]  # no decision moves, one view or two
    assert records[1]["predictions"] == records[3]["predictions"]
    assert records[3]["single_view_calibration"] == records[2]["calibration"]
    done = run_module("fer_explain", "evaluate", "--checkpoint", str(calibrated), "--data", str(data), "--device",
                      "cpu")
    assert done.returncode == 0 and f"calibrated with T = {temperature:.3g}" in done.stdout, done.stderr[-3000:]

    broken = rewrite_metadata(calibrated, {**read_metadata(calibrated), "calibration": {"temperature": -1}},
                              tmp_path / "broken.safetensors")
    with pytest.raises(UserError, match="calibration temperature must be a positive number"):
        Predictor(broken, "cpu")
    for argv, message in ((["calibrate", "--checkpoint", str(checkpoint), "--split", "test"], "never on test"),
                          (["calibrate", "--checkpoint", str(checkpoint), "--split", "train"], "never on train"),
                          (["calibrate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "c.pt")],
                           ".safetensors"),
                          (["calibrate", "--checkpoint", str(tmp_path / "missing.safetensors")], "not found"),
                          (["evaluate", "--checkpoint", str(broken)], "positive number")):
        done = run_module("fer_explain", *argv, "--data", str(data), "--device", "cpu")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
