"""The `predict`, `explain` and `bench` commands end to end, as subprocesses, on a tiny random checkpoint and on
images, folders, a video and every kind of bad input the test makes itself. Slow parts (the subprocess runs) are
module-scoped fixtures shared by several tests."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_explain.classes import CLASSES

REPO = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=32, head_hidden=32)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, Preprocessing())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """root/ good + odd-format images, root/sub/ the bad files and a video (recursion is tested too)."""
    root = tmp_path_factory.mktemp("inputs")
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


@pytest.fixture(scope="module")
def predicted(checkpoint, inputs, tmp_path_factory):
    """One `predict` run over the whole folder (JSON to a file, videos every 4th frame)."""
    out = tmp_path_factory.mktemp("predict") / "result.json"
    proc = run_cli("predict", inputs, "--checkpoint", checkpoint, "--out", out, "--every-n", "4", "--batch-size", "8")
    rows = json.loads(out.read_text()) if out.is_file() else None
    return proc, rows, out


def rows_of(rows, name):
    return [r for r in rows if Path(r["file"]).name == name]


def test_predict_folder_processes_good_files_and_lists_bad_ones(predicted):
    proc, rows, _ = predicted
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {len(BAD_FILES)} files:" in proc.stderr
    skipped_block = proc.stderr.split(f"skipped {len(BAD_FILES)} files:")[1]
    for name in BAD_FILES:
        assert name in skipped_block
        assert not rows_of(rows, name)
    for name in ("no_face.png", *ODD_FORMATS):  # odd formats are converted and processed, never rejected
        assert rows_of(rows, name), f"{name} missing from the output"
        assert name not in skipped_block


def test_predict_rows_have_the_documented_columns(predicted):
    _, rows, _ = predicted
    expected = ["file", "frame", "time_s", "face", "box", "label", "score", *CLASSES, "note"]
    for row in rows:
        assert list(row) == expected
    [no_face] = rows_of(rows, "no_face.png")
    assert no_face["box"] is None and no_face["label"] is None and no_face["face"] is None
    assert "face" in no_face["note"].lower()
    assert no_face["frame"] is None and no_face["time_s"] is None


def test_predict_video_gives_a_per_frame_timeline(predicted):
    _, rows, out = predicted
    frames = rows_of(rows, "clip.avi")
    assert sorted({r["frame"] for r in frames}) == [0, 4, 8]  # 12 frames, every 4th (a frame may hold 0..n faces)
    times = [r["time_s"] for r in frames]
    assert times == sorted(times) and times[1] == pytest.approx(0.4, abs=0.05)
    timeline = out.with_name(f"{out.stem}_clip_timeline.png")
    assert timeline.is_file()
    assert Image.open(timeline).size[0] > 100


@needs_face_photo
def test_predict_finds_the_astronauts_face(predicted):
    _, rows, _ = predicted
    faces = [r for r in rows_of(rows, "astronaut.jpg") if r["box"]]
    assert [r["face"] for r in faces] == list(range(len(faces)))
    assert any(covers_astronauts_face(map(int, r["box"].split())) for r in faces), faces
    for face in faces:
        probs = np.array([face[c] for c in CLASSES])
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert face["label"] == CLASSES[int(probs.argmax())]
        assert face["score"] == pytest.approx(probs.max(), abs=1e-5)


def covers_astronauts_face(box) -> bool:
    """Her face lies around x 180-270, y 60-170 in the 512x512 photo (checked by eye)."""
    x0, y0, x1, y1 = box
    return x0 < 225 < x1 and y0 < 115 < y1 and (x1 - x0) < 250


def test_predict_whole_image_csv_to_stdout(checkpoint, inputs):
    """Without faces, --whole-image classifies the image itself; the GIF's first frame is what is read."""
    sub = inputs / "sub" / "deeper"
    proc = run_cli("predict", inputs / "gray.png", inputs / "cmyk.jpg", sub / "animated.gif", sub / "gif_first_frame.png",
                   "--checkpoint", checkpoint, "--whole-image", "--format", "csv")
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 4
    assert list(rows[0]) == ["file", "frame", "time_s", "face", "box", "label", "score", *CLASSES, "note"]
    for row in rows:
        assert row["label"] in CLASSES and row["box"] == "" and row["frame"] == ""
        assert sum(float(row[c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-4)
    gif, first = ([float(r[c]) for c in CLASSES] for r in rows[2:])
    assert gif == pytest.approx(first, abs=1e-4)


def test_predict_only_bad_files_exits_non_zero(checkpoint, inputs):
    sub = inputs / "sub" / "deeper"
    proc = run_cli("predict", *(sub / name for name in BAD_FILES), "--checkpoint", checkpoint)
    assert_clean(proc)
    assert proc.returncode != 0
    assert proc.stdout == ""  # no table of headers without rows
    assert f"skipped {len(BAD_FILES)} files:" in proc.stderr
    for reason_hint in ("not_an_image.png", "truncated.png", "one_pixel.png", "bomb.png", "broken_video.mp4"):
        line = next(line for line in proc.stderr.splitlines() if reason_hint in line)
        assert len(line.split(":", 1)[1].strip()) > 5  # each file says why


def test_predict_bad_arguments_are_one_line_errors(checkpoint, inputs, tmp_path):
    (tmp_path / "empty_folder").mkdir()
    for args in (["predict", inputs / "no_face.png", "--checkpoint", tmp_path / "missing.safetensors"],
                 ["predict", tmp_path / "empty_folder", "--checkpoint", checkpoint],
                 ["predict", inputs / "no_face.png", "--checkpoint", checkpoint, "--every-n", "0"],
                 ["predict", inputs / "no_face.png", "--checkpoint", checkpoint, "--out", tmp_path]):  # a folder
        proc = run_cli(*args)
        assert_clean(proc)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_predict_missing_path_is_skipped_not_fatal(checkpoint, inputs, tmp_path):
    proc = run_cli("predict", tmp_path / "does_not_exist.jpg", inputs / "gray.png", "--checkpoint", checkpoint,
                   "--format", "json")
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 file:" in proc.stderr and "does_not_exist.jpg" in proc.stderr
    assert [Path(r["file"]).name for r in json.loads(proc.stdout)] == ["gray.png"]
    only_missing = run_cli("predict", tmp_path / "does_not_exist.jpg", "--checkpoint", checkpoint)
    assert only_missing.returncode == 1 and "does_not_exist.jpg" in only_missing.stderr


@pytest.fixture(scope="module")
def explained(checkpoint, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    image = inputs / "astronaut.jpg" if astronaut is not None else inputs / "gray.png"
    proc = run_cli("explain", image, "--checkpoint", checkpoint, "--whole-image", "--out", out, "--target", "happiness")
    return proc, out


def test_explain_writes_panels_annotated_image_and_json(explained):
    proc, out = explained
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "explanation.json").read_text())
    assert set(report) >= {"faces", "notices", "checkpoint", "target"}
    assert report["target"] == "happy"
    assert report["faces"], report
    for face in report["faces"]:
        assert (out / f"face_{face['face']}.png").is_file()
        assert face["target"] == "happy"
        assert set(face["probabilities"]) == set(CLASSES)
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        for method in ("spatial_attention", "token_saliency", "gradcam"):
            grid = np.array(face[method])
            assert grid.shape == (7, 7) and np.isfinite(grid).all()
        assert 0 <= np.min(face["spatial_attention"]) and np.max(face["spatial_attention"]) <= 1
        assert np.min(face["gradcam"]) >= 0
        assert np.ptp(face["token_saliency"]) > 0  # a real map, not a constant placeholder
        for method in ("spatial_attention", "token_saliency", "gradcam", "random"):
            scores = face["faithfulness"][method]
            assert 0 <= scores["deletion_auc"] <= 1 and 0 <= scores["insertion_auc"] <= 1
    annotated = Image.open(out / "annotated.png")
    assert annotated.mode == "RGB" and annotated.size[0] >= 64


@needs_face_photo
def test_explain_boxes_the_detected_face(explained):
    _, out = explained
    report = json.loads((out / "explanation.json").read_text())
    assert any(f["box"] is not None and covers_astronauts_face(f["box"]) for f in report["faces"]), report["faces"]
    assert len(list(out.glob("face_*.png"))) == len(report["faces"])


def test_explain_without_a_face_exits_1_and_still_writes_its_record(checkpoint, inputs, tmp_path):
    proc = run_cli("explain", inputs / "no_face.png", "--checkpoint", checkpoint, "--out", tmp_path / "x")
    assert_clean(proc)
    assert proc.returncode == 1 and "--whole-image" in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "x/explanation.json").read_text())
    assert report["faces"] == [] and "no face" in report["notices"][0].lower()


def test_explain_bad_inputs_exit_2_with_one_line(checkpoint, inputs, tmp_path):
    sub = inputs / "sub" / "deeper"
    cases = {"unknown target": ["explain", inputs / "gray.png", "--checkpoint", checkpoint, "--target", "boredom",
                                "--out", tmp_path / "a"],
             "not an image": ["explain", sub / "not_an_image.png", "--checkpoint", checkpoint, "--out", tmp_path / "b"],
             "out is a file": ["explain", inputs / "gray.png", "--checkpoint", checkpoint, "--out", inputs / "gray.png"],
             "unknown method": ["explain", inputs / "gray.png", "--checkpoint", checkpoint, "--methods", "lime",
                                "--out", tmp_path / "c"]}
    for what, args in cases.items():
        proc = run_cli(*args)
        assert_clean(proc)
        assert proc.returncode == 2, (what, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (what, proc.stderr)
        assert ("boredom" in lines[0]) == (what == "unknown target")


def test_bench_reports_latency_rows_as_json(checkpoint, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--checkpoint", checkpoint, "--runs", "2", "--warmup", "1", "--batch", "4", "--json", out)
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    names = [r["name"] for r in result["rows"]]
    assert names[0] == "predict" and any("token_saliency" in n for n in names) and any("gradcam" in n for n in names)
    for row in result["rows"]:
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] - 1e-9
    assert result["rows"][-1]["batch"] == 4 and result["rows"][-1]["faces_per_s"] > 0
    assert "median ms" in proc.stdout


def test_bench_unknown_method_fails_before_timing(checkpoint):
    proc = run_cli("bench", "--checkpoint", checkpoint, "--methods", "lime", "--runs", "1")
    assert_clean(proc)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "lime" in proc.stderr
    assert "median ms" not in proc.stdout  # nothing was timed


def test_analyze_many_streams_and_bounds_what_it_holds(monkeypatch):
    """Faces of consecutive images share a predict call, results keep their order, and images without faces are
    neither held back nor piled up (a long video without faces would otherwise keep every frame in memory)."""
    import fer_explain.faces as faces_module
    from fer_explain.faces import FaceCrop, FaceSearch
    from fer_explain.pipeline import analyze_many

    crop = FaceCrop(None, np.zeros((48, 48), np.uint8), np.zeros((224, 224, 3), np.uint8))
    monkeypatch.setattr(faces_module, "find_faces", lambda n, pre, **_: FaceSearch([crop] * n, [], None))
    calls = []

    class CountingPredictor:
        preprocessing = None

        def predict(self, batch):
            calls.append(len(batch))
            return [f"prediction {len(calls)}.{i}" for i in range(len(batch))]

    consumed = []

    def images(counts):
        for key, n in enumerate(counts):
            consumed.append(key)
            yield key, n

    stream = analyze_many(CountingPredictor(), images([0, 2, 1, 0, 3, 0]), batch_size=3)
    key, first = next(stream)
    assert key == 0 and first.faces == [] and consumed == [0] and calls == []  # no face: yielded at once
    results = [first] + [r for _, r in stream]
    assert [len(r.faces) for r in results] == [0, 2, 1, 0, 3, 0] and calls == [3, 3]
    assert [f.prediction for f in results[1].faces + results[2].faces] == ["prediction 1.0", "prediction 1.1",
                                                                            "prediction 1.2"]
    consumed.clear()
    held = analyze_many(CountingPredictor(), images([1] + [0] * 100), batch_size=4)
    next(held)
    assert len(consumed) == 4  # at most batch_size images wait for a batch to fill
