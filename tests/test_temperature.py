"""`python -m training.temperature`: the fitted T undoes a known miscalibration, leaves every decision as it is, is
fitted on val only (T = 1 is the model as `evaluate` measures it), and bad input is one clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_explain.calibration import calibration_metrics
from test_training import run_module, write_ferplus_npz
from training.temperature import fit_temperature, scaled


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
    np.testing.assert_allclose(scaled(soft, 1.0), soft, atol=1e-9)


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
    assert "| resnet18 Bi-LSTM | 1 |" in (tmp_path / "out/temperature.md").read_text()
    for argv, message in ((["--checkpoints", str(tmp_path / "missing.safetensors")], "missing.safetensors"),
                          (["--checkpoints", str(checkpoint), "--batch-size", "0"], "--batch-size")):
        done = run_module("training.temperature", *argv, "--data", str(data), "--out", str(tmp_path / "o"))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
