"""Shared by test_app.py and test_browser.py: a tiny random checkpoint pair and a fresh import of app.py that uses
it."""
from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_builders import TRAIN_COUNTS

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"
TWO_FACES = REPO / "examples" / "two_faces.jpg"


def make_checkpoints(folder: Path) -> tuple[Path, Path]:
    """Random resnet18 Bi-LSTM model and baseline (float16 files: half the size), seeded."""
    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model

    torch.manual_seed(0)
    paths = []
    for variant, name in (("full", "tiny.safetensors"), ("baseline", "tiny_baseline.safetensors")):
        model = build_model(ModelConfig(backbone="resnet18", variant=variant, lstm_hidden=32, head_hidden=32))
        metadata = {"validation": {"accuracy": 0.5}, "data": {"train": {"class_counts": TRAIN_COUNTS}}}
        paths.append(save_checkpoint(folder / name, model.eval(), Preprocessing(), metadata, dtype=torch.float16))
    return paths[0], paths[1]


def import_app(monkeypatch, module_name: str, checkpoint, baseline):
    """app.py imported under `module_name` with FER_CHECKPOINT/FER_BASELINE set first (it loads models at import)."""
    monkeypatch.setenv("FER_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("FER_BASELINE", str(baseline))
    monkeypatch.setenv("FER_DEVICE", "cpu")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = importlib.util.spec_from_file_location(module_name, REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_bad_inputs(folder: Path) -> dict[str, Path]:
    """Files a user might submit that are not usable photos of faces."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"not_an_image": folder / "notes.png", "one_pixel": folder / "one.png", "no_face": folder / "plain.png",
             "too_many_pixels": folder / "huge.png"}
    files["not_an_image"].write_text("this is text, not a PNG\n")
    Image.new("RGB", (1, 1), (120, 120, 120)).save(files["one_pixel"])
    # 56 megapixels (over image_io's 50) in a 60 kB file: under the upload limit, refused when opened
    Image.new("L", (8000, 7000), 128).save(files["too_many_pixels"])
    rng = np.random.default_rng(0)  # smooth colour ramp plus mild noise: an image, but no face in it
    ramp = np.linspace(40, 200, 320, dtype=np.float32)[None, :, None].repeat(240, 0).repeat(3, 2)
    Image.fromarray(np.clip(ramp + rng.normal(0, 4, ramp.shape), 0, 255).astype(np.uint8)).save(files["no_face"])
    return files
