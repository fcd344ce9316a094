"""The CUDA paths, run first on a GPU machine (skipped where there is no CUDA, so CI never runs them): training with
bf16 autocast, fused Adam, channels_last and device-resident data; evaluation; the three explanations with cuDNN
switched off only around gradients; the cost and throughput measurements. Small models and synthetic data, so the
whole file takes about a minute and a broken CUDA path costs that minute, not a 10-minute training call."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

REPO = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from test_training import write_ferplus_npz
    return write_ferplus_npz(tmp_path_factory.mktemp("ferplus"), {"train_0": 16, "val": 4, "test": 4})


def test_paper_recipe_trains_on_cuda_in_bf16_and_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["training.train", "--config", str(REPO / "training/configs/paper.yaml"), "--data", str(data_dir),
            "--out", str(out), "--backbone", "resnet18", "--device", "cuda", "--epochs", "2"]
    done = _run(*argv)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["device"].startswith("cuda") and meta["training"]["recipe"]["amp"] == "bf16"
    assert meta["calibration"]["split"] == "val" and meta["calibration"]["images"] == 16  # fitted on the GPU's val
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["train_loss"]) for r in rows)
    done = _run(*argv[:-1], "3")  # one more epoch: resumes from the saved optimizer state on the GPU
    assert done.returncode == 0 and "resuming after epoch 2" in done.stderr, done.stderr[-3000:]


def test_study_trains_side_by_side_evaluates_and_exports_on_cuda(data_dir, tmp_path):
    done = _run("training.study", "--config", str(REPO / "training/configs/paper.yaml"), "--data", str(data_dir),
                "--backbones", "resnet18", "--variants", "full", "baseline", "--seeds", "0", "--epochs", "1",
                "--parallel", "2", "--device", "cuda", "--runs-dir", str(tmp_path / "runs"), "--time-limit", "300",
                "--pack", str(tmp_path / "records.tar.gz"), "--export-weights", str(tmp_path / "w"),
                "--export-max-mib", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "runs/paper/resnet18/full/seed0/eval_test.json").read_text())
    assert record["device"].startswith("cuda") and len(record["predictions"]) == record["n"]
    assert len(list((tmp_path / "w").glob("*.fp16.safetensors"))) == 2


def test_three_explanations_on_cuda_restore_cudnn():
    from fer_explain.checkpoint import Checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model
    from fer_explain.predictor import Predictor

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=8, head_hidden=16)).eval()
    predictor = Predictor(Checkpoint(model, model.config, Preprocessing(), {}, None), device="cuda")
    face = torch.randint(0, 256, (1, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    p = predictor.predict(face)[0]
    e = predictor.explain(p)
    assert set(e.maps) == {"spatial_attention", "token_saliency", "gradcam"}
    assert all(np.isfinite(m.grid).all() for m in e.maps.values())
    assert torch.backends.cudnn.enabled and not predictor.model.training


def test_cost_and_throughput_measure_on_cuda(tmp_path):
    done = _run("fer_explain", "cost", "--backbone", "resnet18", "--device", "cuda", "--runs", "3",
                "--json", str(tmp_path / "cost.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["peak_memory_mb"] > 0 and cost["latency_ms"]["64"] > 0
    done = _run("training.throughput", "--backbone", "resnet18", "--batch-sizes", "32", "--images", "256",
                "--repeats", "1", "--device", "cuda", "--json", str(tmp_path / "probe.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "probe.json").read_text())["rows"][0]["images_per_s"] > 0
