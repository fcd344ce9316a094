"""`python -m training.faithfulness`: every method's deletion / insertion AUC per model over a seeded sample of a
split, as the app computes them for one face, summarised against random orders; bad input is a clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app_helpers import make_checkpoints
from test_training import run_module, write_ferplus_npz


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("faithfulness")
    checkpoint, baseline = make_checkpoints(root / "checkpoints")
    data = write_ferplus_npz(root / "data", {"train_0": 1, "val": 1, "test": 2})  # 8 test faces
    done = run_module("training.faithfulness", "--checkpoints", str(checkpoint), str(baseline), "--data", str(data),
                      "--faces", "5", "--seed", "3", "--out", str(root / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    return root, checkpoint, data, json.loads((root / "out/faithfulness.json").read_text())


def test_the_summary_is_the_mean_of_what_the_app_computes_per_face(study):
    from fer_explain.data import load_split
    from fer_explain.predictor import Predictor

    root, checkpoint, data, result = study
    assert result["faces"] == 5 and len(result["indices"]) == 5 and len(result["models"]) == 2
    bilstm = result["models"][0]
    assert bilstm["name"].endswith("Bi-LSTM") and result["models"][1]["name"].endswith("baseline")
    predictor = Predictor(str(checkpoint), device="cpu")
    images = load_split(data, "test").images[result["indices"]]
    first = predictor.explain(predictor.predict(images[:1])[0])
    assert bilstm["methods"] == list(first.faithfulness)
    for m, scores in enumerate(first.faithfulness.values()):  # the same face, the same figures as one app request
        for key in ("deletion_auc", "insertion_auc"):
            assert bilstm["faces"][0][key][m] == pytest.approx(scores[key], abs=5e-5)  # stored rounded
    for method, summary in bilstm["summary"].items():
        per_face = [f["deletion_auc"][bilstm["methods"].index(method)] for f in bilstm["faces"]]
        assert summary["deletion_auc"]["mean"] == pytest.approx(np.mean(per_face), abs=5e-5)
        assert 0.0 <= summary["insertion_auc"]["mean"] <= 1.0
        assert method == "random" or 0.0 <= summary["beats_random"] <= 1.0
    assert set(bilstm["summary"]) == {"spatial_attention", "token_saliency", "gradcam", "random"}
    assert result["tokens_per_step"] == 7 and result["random_orders"] == 3  # the settings the table states
    # IG's completeness gap per face, from Captum's delta: |delta| / |sum - delta|, and its summary
    saliency = first.maps["token_saliency"].meta
    expected = abs(saliency["convergence_delta"]) / abs(saliency["attribution_sum"] - saliency["convergence_delta"])
    assert bilstm["faces"][0]["ig_completeness"] == pytest.approx(expected, rel=1e-3, abs=1e-5)
    gaps = [f["ig_completeness"] for f in bilstm["faces"]]
    assert bilstm["ig_completeness"]["n"] == 5
    assert bilstm["ig_completeness"]["median"] == pytest.approx(np.median(gaps), rel=1e-3, abs=1e-5)
    table = (root / "out/faithfulness.md").read_text()
    assert "| beats random |" in table and "7 per step" in table and "3 random orders per face" in table
    assert len([line for line in table.splitlines() if line.startswith("| mobilenet") or "Bi-LSTM |" in line
                or "baseline |" in line]) == 8  # 2 models x (3 maps + random)
    assert "Integrated Gradients (16 steps) against completeness" in table and "(5 faces)" in table


def test_bad_input_is_one_clear_error(study, tmp_path):
    root, checkpoint, data, _ = study
    for argv, message in ((["--checkpoints", str(tmp_path / "missing.safetensors")], "missing.safetensors"),
                          (["--checkpoints", str(checkpoint), "--faces", "-1"], "--faces"),
                          (["--checkpoints", str(checkpoint), "--split", "nope"], "nope")):
        done = run_module("training.faithfulness", *argv, "--data", str(data), "--out", str(tmp_path / "o"))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
