"""What a RAF-DB user runs, end to end on a synthetic RAF-DB folder (tests/data_builders.py: `EmoLabel/` and
`Image/aligned/`, colour images, 7 classes): train (val carved out of train), the checkpoint calibrated on that val,
`evaluate` on the test split without contempt, and `predict` on one of the aligned faces. Each step as a subprocess,
as a user types it."""
from __future__ import annotations

import csv
import io
import json

from PIL import Image

from data_builders import make_rafdb
from test_training import QUICK, run_module


def test_train_evaluate_and_predict_on_the_rafdb_layout(tmp_path):
    root = make_rafdb(tmp_path / "RAF-DB", per_class=10)  # 9 train + 1 val per class, 1 test image per class
    run = tmp_path / "run"
    done = run_module("training.train", "--config", str(QUICK), "--data", str(root), "--out", str(run),
                      "--backbone", "resnet18", "--epochs", "1", "--batch-size", "4", "--limit-train", "8",
                      "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((run / "model.json").read_text())
    assert meta["data"]["format"] == "rafdb" and meta["data"]["val"]["n"] == 7
    assert meta["preprocessing"]["grayscale"] is False and meta["preprocessing"]["source_size"] == 8
    assert "contempt" in meta["data"]["train_full"]["missing_classes"]
    assert meta["calibration"]["split"] == "val" and meta["calibration"]["images"] == 7

    done = run_module("fer_explain", "evaluate", "--checkpoint", str(run), "--data", str(root), "--device", "cpu",
                      "--json", str(tmp_path / "test.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "calibrated with T = " in done.stdout
    record = json.loads((tmp_path / "test.json").read_text())
    assert record["split"] == "test" and record["n"] == 7
    assert record["temperature"] == meta["calibration"]["temperature"]
    assert "contempt" not in record["evaluated_classes"] and len(record["evaluated_classes"]) == 7

    face = tmp_path / "face.png"  # one of the aligned test faces at RAF-DB's own 100x100 (the builder's are 8x8)
    Image.open(root / "Image/aligned/test_4000_aligned.jpg").resize((100, 100)).save(face)
    done = run_module("fer_explain", "predict", str(face), "--checkpoint", str(run), "--whole-image", "--device",
                      "cpu", "--format", "csv")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 1 and rows[0]["label"] in meta["classes"]
    assert abs(sum(float(rows[0][c]) for c in meta["classes"]) - 1) < 1e-3
