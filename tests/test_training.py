"""Training: class weights, the hard/soft cross-entropy, a tiny CPU run (learning, files, reload, exact resume), the
best_effort recipe end to end, and the train command line and its time limit on a tiny FER+-layout folder this file
writes. Synthetic data only."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_explain.errors import UserError
from fer_explain.losses import class_weights, cross_entropy
from training import train

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "training/configs/quick.yaml"
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
VOTE_OF_CLASS = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise"}  # our class index -> FERPlus vote column


def synthetic_faces(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """48x48 gray images whose brightness and bright top band grow with the class: learnable in a few steps."""
    x = np.empty((len(labels), 48, 48), np.float32)
    for i, c in enumerate(labels):
        x[i] = 40 + 50 * c
        x[i, : 12 * (c + 1)] += 40
    return np.clip(x + rng.normal(0, 8, x.shape), 0, 255).astype(np.uint8)


def write_ferplus_npz(root: Path, per_class: dict[str, int], classes: int = 4) -> Path:
    """train_0.npz / val.npz / test.npz + labels.csv with the FER+ README's columns; classes 0..classes-1 only."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for name, n in per_class.items():
        labels = np.repeat(np.arange(classes), n).astype(np.uint8)
        np.savez(root / f"{name}.npz", images=synthetic_faces(labels, rng), labels=labels,
                 fer2013_row=np.arange(len(rows), len(rows) + len(labels), dtype=np.int32))
        for pos, c in enumerate(labels):
            votes = dict.fromkeys(VOTE_COLUMNS, 0) | {VOTE_OF_CLASS[int(c)]: 8, "unknown": 2}
            rows.append([len(rows), f"fer{len(rows):07d}.png", f"{name}.npz", pos, "", int(c), name.split("_")[0],
                         *votes.values()])
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file", "npz", "pos", "label", "label_id", "split",
                         *[f"votes_{v}" for v in VOTE_COLUMNS]])
        writer.writerows(rows)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_ferplus_npz(tmp_path_factory.mktemp("ferplus"), {"train_0": 2, "val": 1, "test": 1})


def train_args(data: Path, out: Path, *extra: str):
    return train.get_args_parser().parse_args(
        ["--config", str(QUICK), "--data", str(data), "--out", str(out), "--backbone", "resnet18",
         "--batch-size", "4", "--lr", "1e-3", "--device", "cpu", "--seed", "0", *extra])


@pytest.fixture(scope="module")
def two_epochs(data_dir, tmp_path_factory):
    return train.main(train_args(data_dir, tmp_path_factory.mktemp("run") / "run", "--epochs", "2"))


# --- losses -----------------------------------------------------------------------------------------------------

def test_class_weights_follow_the_formula_and_zero_absent_classes():
    # N = 8 over C = 2 present classes: w = 8 / (2 * N_c)
    assert class_weights([2, 6, 0]).tolist() == pytest.approx([2.0, 8 / 12, 0.0])
    assert class_weights([5, 5, 5, 5]).tolist() == pytest.approx([1.0] * 4)
    # absent classes neither get a weight nor count in C: same weights with or without them
    w = class_weights([3, 0, 1, 0, 0, 0, 0, 4])
    assert w.tolist() == pytest.approx([8 / 9, 0, 8 / 3, 0, 0, 0, 0, 8 / 12])
    with pytest.raises(ValueError):
        class_weights([0, 0, 0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_and_hard_cross_entropy_agree_on_one_hot_targets(weighted, smoothing):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 8), torch.tensor([0, 1, 1, 3, 7, 2])
    weight = class_weights([3, 5, 1, 2, 0, 0, 0, 4]) if weighted else None
    hard = cross_entropy(logits, labels, weight, smoothing)
    soft = cross_entropy(logits, F.one_hot(labels, 8).float(), weight, smoothing)
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    assert hard.item() == pytest.approx(F.cross_entropy(logits, labels, weight, label_smoothing=smoothing).item())


def test_soft_cross_entropy_averages_the_voted_classes():
    torch.manual_seed(1)
    logits = torch.randn(1, 8)
    half = torch.zeros(1, 8)
    half[0, [2, 5]] = 0.5
    expected = (cross_entropy(logits, torch.tensor([2])) + cross_entropy(logits, torch.tensor([5]))) / 2
    assert cross_entropy(logits, half).item() == pytest.approx(expected.item(), rel=1e-6)


# --- recipes ----------------------------------------------------------------------------------------------------

def test_the_paper_recipe_holds_none_of_the_best_effort_tricks(tmp_path):
    from training.recipe import load_recipe

    configs = REPO / "training/configs"
    paper, best = load_recipe(configs / "paper.yaml"), load_recipe(configs / "best_effort.yaml")
    assert (paper["optimizer"], paper["lr"], paper["epochs"], paper["class_weighting"]) == ("adam", 1e-4, 50, True)
    tricks = {"soft_labels": False, "label_smoothing": 0.0, "ema": 0.0, "lr_schedule": "constant", "flip_tta": False}
    assert {k: paper[k] for k in tricks} == tricks
    assert all(best[k] != v for k, v in tricks.items())
    assert load_recipe(QUICK, {"lr": 0.5, "no_class_weighting": True})["lr"] == 0.5
    # every shipped recipe loads, and is named after its file: the model card's reproduce command is built as
    # training/configs/<recipe name>.yaml
    for path in sorted(configs.glob("*.yaml")):
        assert load_recipe(path)["name"] == path.stem, path
    bad = tmp_path / "bad.yaml"
    for text, message in (("ema: 1.5\n", "ema"), ("backbone: vgg16\n", "backbone"), ("epochs: two\n", "epochs")):
        bad.write_text(text)
        with pytest.raises(UserError, match=message):
            load_recipe(bad)


# --- a tiny training run ----------------------------------------------------------------------------------------

def test_two_epochs_lower_the_loss_and_write_the_run_folder(two_epochs):
    run = two_epochs.run_dir
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[1]["train_loss"] < log[0]["train_loss"]
    for name in ("model.safetensors", "model.json", "resume.safetensors", "resume.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((run / "model.json").read_text())
    assert meta["training"]["best_epoch"] == two_epochs.best_epoch in (1, 2)
    assert meta["training"]["recipe"]["lr"] == 1e-3  # the flag overrode the YAML
    assert meta["data"]["format"] == "ferplus-npz" and meta["data"]["train"]["n"] == 8
    assert meta["data"]["train"]["missing_classes"] == ["fear", "disgust", "anger", "contempt"]
    assert meta["validation"]["evaluated_classes"] == ["neutral", "happy", "sad", "surprise"]
    assert meta["preprocessing"]["grayscale"] is True and meta["preprocessing"]["source_size"] == 48
    assert "git_commit" in meta


def test_the_checkpoint_reloads_to_the_best_epochs_predictions(two_epochs, data_dir):
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.evaluate import predict_probabilities

    ckpt = load_checkpoint(two_epochs.run_dir)
    val = load_split(data_dir, "val")
    probs = predict_probabilities(ckpt.model, val, ckpt.preprocessing, "cpu")
    stored = ckpt.metadata["validation"]
    nll = -np.log(probs[np.arange(len(val)), val.labels.numpy()]).mean()
    assert nll == pytest.approx(stored["loss"], abs=1e-5)  # pins the weights to the best epoch's
    assert (probs.argmax(1) == val.labels.numpy()).mean() == stored["accuracy"]


def test_the_run_ends_calibrated_on_val_as_the_calibrate_command_would_calibrate_it(two_epochs, data_dir, tmp_path):
    from fer_explain.predictor import Predictor

    run = two_epochs.run_dir
    meta = json.loads((run / "model.json").read_text())
    calibration = meta["calibration"]
    assert calibration["split"] == "val" and calibration["images"] == 4
    assert calibration["data_fingerprint"] == meta["data"]["val"]["fingerprint"]
    assert meta["training"]["finalized"] is True  # the summary survived the rewrite
    assert Predictor(run, device="cpu").temperature == calibration["temperature"] != 1.0
    copy = tmp_path / "recalibrated.safetensors"
    done = run_module("fer_explain", "calibrate", "--checkpoint", str(run), "--data", str(data_dir), "--out",
                      str(copy), "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    assert copy.read_bytes() == (run / "model.safetensors").read_bytes()


def test_a_resumed_run_continues_exactly_like_an_uninterrupted_one(two_epochs, data_dir, tmp_path):
    out = tmp_path / "run"
    first = train.main(train_args(data_dir, out, "--epochs", "1"))
    assert len(first.log) == 1
    resumed = train.main(train_args(data_dir, out, "--epochs", "2"))  # same command, larger budget
    uninterrupted = two_epochs.log
    for a, b in zip(resumed.log, uninterrupted, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    again = train.main(train_args(data_dir, out, "--epochs", "2"))  # finished: nothing more is trained
    assert len(again.log) == 2 and json.loads((out / "resume.json").read_text())["epoch"] == 2
    with pytest.raises(UserError, match="other settings"):
        train.main(train_args(data_dir, out, "--epochs", "2", "--variant", "baseline"))


def test_the_best_effort_recipe_trains_saves_its_ema_weights_and_resumes_exactly(data_dir, tmp_path):
    """The recipe the GPU sessions run (soft labels, smoothing, AdamW + warm-up + cosine, EMA, clipping, bf16 autocast,
    flip TTA) end to end on a CPU: the saved weights are the EMA ones that validation scored with the flip, and a run
    resumed after epoch 1 (EMA and schedule restored) ends exactly where an uninterrupted one does. The EMA decays at
    0.9 here instead of 0.999: at 0.999 it would barely move from the initial weights in the 4 steps of this run, and
    a resume that lost it would pass unnoticed."""
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.evaluate import predict_probabilities

    config = tmp_path / "best_effort.yaml"
    yaml = (REPO / "training/configs/best_effort.yaml").read_text()
    assert "\nema: 0.999\n" in yaml
    config.write_text(yaml.replace("\nema: 0.999\n", "\nema: 0.9\n"))

    def best_effort(out: Path, epochs: int):
        return train.main(train.get_args_parser().parse_args(
            ["--config", str(config), "--data", str(data_dir), "--out", str(out), "--backbone", "resnet18",
             "--batch-size", "4", "--device", "cpu", "--seed", "0", "--epochs", str(epochs)]))

    whole = best_effort(tmp_path / "whole", 2)
    recipe = json.loads((whole.run_dir / "model.json").read_text())["training"]["recipe"]
    assert (recipe["name"], recipe["ema"], recipe["soft_labels"], recipe["flip_tta"], recipe["lr_schedule"]) == \
        ("best_effort", 0.9, True, True, "cosine")
    ckpt = load_checkpoint(whole.run_dir)
    val = load_split(data_dir, "val")
    probs = predict_probabilities(ckpt.model, val, ckpt.preprocessing, "cpu", flip_tta=True, progress=False)
    nll = -np.log(probs[np.arange(len(val)), val.labels.numpy()]).mean()
    assert nll == pytest.approx(ckpt.metadata["validation"]["loss"], abs=1e-4)

    best_effort(tmp_path / "resumed", 1)
    resumed = best_effort(tmp_path / "resumed", 2)
    for a, b in zip(resumed.log, whole.log, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


# --- command lines ----------------------------------------------------------------------------------------------

def run_module(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see tests/conftest.py: one_thread
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=env)


def test_train_command_line(data_dir, tmp_path):
    done = run_module("training.train", "--config", str(QUICK), "--out", str(tmp_path / "cli_run"), "--backbone",
                      "resnet18", "--limit-train", "4", "--batch-size", "4", "--data", str(data_dir), "--epochs", "1",
                      "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "cli_run/model.safetensors").is_file()
    assert "calibrated on val (4 images): T = " in done.stderr
    assert "calibration" in json.loads((tmp_path / "cli_run/model.json").read_text())
    done = run_module("training.train", "--config", str(QUICK), "--out", str(tmp_path / "as_trained"), "--backbone",
                      "resnet18", "--limit-train", "4", "--batch-size", "4", "--data", str(data_dir), "--epochs", "1",
                      "--device", "cpu", "--no-calibrate")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "calibrat" not in done.stderr
    assert "calibration" not in json.loads((tmp_path / "as_trained/model.json").read_text())
    done = run_module(*done.args[2:-1])  # the same run without --no-calibrate: finished, so it says how to calibrate
    assert done.returncode == 0 and "already finished" in done.stderr, done.stderr[-2000:]
    assert f"python -m fer_explain calibrate --checkpoint {tmp_path / 'as_trained'} --data {data_dir}" in done.stderr


def test_time_limit_stops_after_the_last_epoch_that_fits_and_stays_resumable(data_dir, tmp_path):
    out = tmp_path / "limited"
    result = train.main(train_args(data_dir, out, "--epochs", "5", "--time-limit", "0.001"))
    assert len(result.log) == 1  # the first epoch always runs; the second would not fit
    meta = json.loads((out / "model.json").read_text())["training"]
    assert meta["time_limited"] is True and meta["epochs_run"] == 1
    result = train.main(train_args(data_dir, out, "--epochs", "2"))  # same run, no limit: it continues
    assert len(result.log) == 2


@pytest.mark.parametrize("problem", ["config", "data"])
def test_bad_config_or_data_exit_2_with_one_line(problem, data_dir, tmp_path):
    config, data = QUICK, data_dir
    if problem == "config":
        config = tmp_path / "bad.yaml"
        config.write_text(QUICK.read_text() + "learning_rate: 0.1\n")
    else:
        data = tmp_path / "no_such_folder"
    done = run_module("training.train", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "o"),
                      "--device", "cpu")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert ("learning_rate" if problem == "config" else "no_such_folder") in lines[0]
