"""The `explain` and `bench` commands end to end, as subprocesses, on a tiny random checkpoint: the panels, annotated
image and JSON record `explain` writes, for one photo and for a batch, its exit codes for a missing face and for bad
input, and `bench`'s timing rows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_clean, astronaut, covers_astronauts_face, needs_face_photo, run_cli
from fer_explain.classes import CLASSES


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
    assert report["target"] == "happy" and report["prior_correction"] == 0 and report["temperature"] == 1
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
             "out is a file": ["explain", inputs / "gray.png", "--checkpoint", checkpoint,
                               "--out", inputs / "gray.png"],
             "unknown method": ["explain", inputs / "gray.png", "--checkpoint", checkpoint, "--methods", "lime",
                                "--out", tmp_path / "c"]}
    for what, args in cases.items():
        proc = run_cli(*args)
        assert_clean(proc)
        assert proc.returncode == 2, (what, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (what, proc.stderr)
        assert ("boredom" in lines[0]) == (what == "unknown target")


def test_explain_a_folder_gives_each_photo_its_subfolder_and_lists_the_bad_files(checkpoint, inputs, tmp_path):
    """A batch: folders searched recursively, one subfolder per photo (same names numbered), index.json, and the bad
    files and videos skipped and listed at the end, without stopping the others."""
    import shutil

    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    shutil.copy(inputs / "gray.png", photos / "face.png")
    shutil.copy(inputs / "rgba.png", photos / "more" / "face.png")  # the same name in a subfolder
    shutil.copy(inputs / "sub" / "deeper" / "not_an_image.png", photos / "more" / "broken.png")
    shutil.copy(inputs / "sub" / "deeper" / "clip.avi", photos / "clip.avi")
    out = tmp_path / "out"
    proc = run_cli("explain", photos, inputs / "cmyk.jpg", tmp_path / "missing.png", "--checkpoint", checkpoint,
                   "--whole-image", "--no-faithfulness", "--out", out)
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((out / "index.json").read_text())
    assert [(Path(p["image"]).name, Path(p["folder"]).name) for p in index["photos"]] == [
        ("face.png", "face"), ("face.png", "face-2"), ("cmyk.jpg", "cmyk")]
    for photo in index["photos"]:
        report = json.loads((Path(photo["folder"]) / "explanation.json").read_text())
        assert report["image"] == photo["image"] and len(report["faces"]) == photo["faces"] == 1
        assert [f["label"] for f in report["faces"]] == photo["labels"]
        assert (Path(photo["folder"]) / "face_0.png").is_file() and (Path(photo["folder"]) / "annotated.png").is_file()
    skipped = {Path(s["file"]).name: s["reason"] for s in index["skipped"]}
    assert set(skipped) == {"broken.png", "clip.avi", "missing.png"}, skipped
    assert "predict" in skipped["clip.avi"] and "no such file" in skipped["missing.png"]
    assert "skipped 3 files:" in proc.stderr and "broken.png" in proc.stderr and "3 photos" in proc.stderr


def test_explain_a_batch_without_faces_or_readable_photos_exits_1(checkpoint, inputs, tmp_path):
    proc = run_cli("explain", inputs / "no_face.png", inputs / "gray.png", "--checkpoint", checkpoint,
                   "--no-faithfulness", "--out", tmp_path / "none")
    assert_clean(proc)
    assert proc.returncode == 1 and "no face to explain" in proc.stderr, proc.stderr
    assert len(json.loads((tmp_path / "none" / "index.json").read_text())["photos"]) == 2  # written all the same
    bad = inputs / "sub" / "deeper"
    proc = run_cli("explain", bad / "not_an_image.png", bad / "one_pixel.png", "--checkpoint", checkpoint,
                   "--out", tmp_path / "bad")
    assert_clean(proc)
    assert proc.returncode == 1 and "none of the inputs could be processed" in proc.stderr, proc.stderr
    assert "not_an_image.png" in proc.stderr and "one_pixel.png" in proc.stderr


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
