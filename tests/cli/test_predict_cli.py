"""The `predict` command end to end, as a subprocess, on a tiny random checkpoint and on images, folders, a video
and every kind of bad input the test makes itself. The slow part (one run over the whole folder) is a module-scoped
fixture shared by several tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import (BAD_FILES, ODD_FORMATS, assert_clean, covers_astronauts_face, needs_face_photo,
                         run_cli, tiny_checkpoint)
from data_builders import TRAIN_COUNTS
from fer_explain.classes import CLASSES


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


def test_predict_whole_image_csv_to_stdout(checkpoint, inputs):
    """Without faces, --whole-image classifies the image itself; the GIF's first frame is what is read."""
    sub = inputs / "sub" / "deeper"
    proc = run_cli("predict", inputs / "gray.png", inputs / "cmyk.jpg", sub / "animated.gif",
                   sub / "gif_first_frame.png", "--checkpoint", checkpoint, "--whole-image", "--format", "csv")
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
    import torch
    from safetensors.torch import save_file

    (tmp_path / "empty_folder").mkdir()
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))  # not a fer-explain checkpoint
    for args in (["predict", inputs / "no_face.png", "--checkpoint", tmp_path / "missing.safetensors"],
                 ["predict", inputs / "no_face.png", "--checkpoint", tmp_path / "foreign.safetensors"],
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


def test_predict_prior_correction_adjusts_the_decision(checkpoint, inputs, tmp_path):
    """--prior-correction TAU: each row's probabilities are the model's reweighted by the inverse training frequency
    to the power TAU (renormalised) and the label is their argmax; a bad TAU, or a checkpoint that records no
    training class counts, is a one-line error before any file is read."""
    images = [inputs / "gray.png", inputs / "cmyk.jpg", inputs / "palette.png", inputs / "rgba.png"]
    runs = {}
    for tau in ("0", "1.5"):
        proc = run_cli("predict", *images, "--checkpoint", checkpoint, "--whole-image", "--format", "json",
                       "--prior-correction", tau)
        assert_clean(proc)
        assert proc.returncode == 0, proc.stderr
        assert ("prior correction tau = 1.5" in proc.stderr) == (tau == "1.5")
        runs[tau] = json.loads(proc.stdout)
    prior = np.array([TRAIN_COUNTS[c] for c in CLASSES], dtype=float)
    prior /= prior.sum()
    for before, after in zip(runs["0"], runs["1.5"]):
        raw = np.array([before[c] for c in CLASSES]) * prior ** -1.5
        expected = raw / raw.sum()
        assert [after[c] for c in CLASSES] == pytest.approx(expected.tolist(), abs=2e-6)
        assert after["label"] == CLASSES[int(expected.argmax())]
        assert "prior correction tau = 1.5" in after["note"] and "prior correction" not in before["note"]
    assert [r["label"] for r in runs["0"]] != [r["label"] for r in runs["1.5"]]  # the rule changed a decision
    uncounted = tiny_checkpoint(tmp_path, class_counts=None)
    for args, message in (([checkpoint, "--prior-correction", "5"], "between 0 and 2"),
                          ([uncounted, "--prior-correction", "0.5"], "class_counts")):
        proc = run_cli("predict", images[0], "--checkpoint", *args)
        assert_clean(proc)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
