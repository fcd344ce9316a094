"""Shared by the CLI tests (conftest.py, test_predict_cli.py, test_explain_cli.py): running `python -m fer_explain`
as a subprocess, a tiny random checkpoint, and a folder of images, a video and every kind of bad input, all made
here."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_builders import TRAIN_COUNTS  # tests/, on sys.path through tests/conftest.py

REPO = Path(__file__).resolve().parents[2]
BAD_FILES = ("not_an_image.png", "truncated.png", "one_pixel.png", "bomb.png", "broken_video.mp4")
ODD_FORMATS = ("rgba.png", "cmyk.jpg", "sixteen_bit.png", "palette.png", "gray.png", "animated.gif")

try:  # a real face photo (public domain, NASA) ships with scikit-image
    from skimage.data import astronaut
except ImportError:
    astronaut = None
needs_face_photo = pytest.mark.skipif(astronaut is None, reason="scikit-image (astronaut photo) not installed")


def run_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    # one torch thread: the CPU is shared with other test runs, and an oversubscribed OpenMP pool makes the LSTM's
    # many small ops (Integrated Gradients) 10-100x slower
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fer_explain", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def pattern(seed: int, size=(96, 80)) -> np.ndarray:
    """A smooth random RGB pattern: no face, but distinct images give distinct (random-model) predictions."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size[::-1], Image.BILINEAR))


def png_with_header_size(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (a decompression bomb) but whose data is tiny."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def write_video(path: Path, frames: int = 12, size=(64, 48)) -> None:
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.ascontiguousarray(pattern(100 + i, size[::-1])[..., ::-1]))
    writer.release()


def tiny_checkpoint(folder: Path, class_counts: dict | None = TRAIN_COUNTS) -> Path:
    """A random resnet18 Bi-LSTM model (seeded): fast, and its predictions differ between images."""
    import torch

    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=32, head_hidden=32)).eval()
    extra = {"data": {"train": {"class_counts": class_counts}}} if class_counts else None
    return save_checkpoint(folder / "tiny.safetensors", model, Preprocessing(), extra)


def make_inputs(root: Path) -> Path:
    """root/ good + odd-format images, root/sub/ the bad files and a video (recursion is tested too)."""
    sub = root / "sub" / "deeper"
    sub.mkdir(parents=True)
    Image.fromarray(pattern(1)).save(root / "no_face.png")
    if astronaut is not None:
        Image.fromarray(astronaut()).save(root / "astronaut.jpg", quality=92)
    rgb = pattern(2)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA").save(root / "rgba.png")
    Image.fromarray(pattern(3)).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray((pattern(4)[..., 0].astype(np.uint16) * 257)).save(root / "sixteen_bit.png")
    Image.fromarray(pattern(5)).convert("P", palette=Image.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(pattern(6)).convert("L").save(root / "gray.png")
    first, second = Image.fromarray(pattern(7)), Image.fromarray(pattern(8))
    first.save(sub / "animated.gif", save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(sub / "animated.gif") as gif:  # frame 0 exactly as decoded, palette quantisation included
        assert gif.n_frames == 2
        gif.convert("RGB").save(sub / "gif_first_frame.png")
    write_video(sub / "clip.avi")
    (sub / "not_an_image.png").write_text("this is text, not pixels\n")
    Image.fromarray(pattern(9, (200, 200))).save(root / "full.png")
    data = (root / "full.png").read_bytes()
    (sub / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "full.png").unlink()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(sub / "one_pixel.png")
    png_with_header_size(sub / "bomb.png", 10000, 10000)
    (sub / "broken_video.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    return root


def covers_astronauts_face(box) -> bool:
    """Her face lies around x 180-270, y 60-170 in the 512x512 photo (checked by eye)."""
    x0, y0, x1, y1 = box
    return x0 < 225 < x1 and y0 < 115 < y1 and (x1 - x0) < 250
