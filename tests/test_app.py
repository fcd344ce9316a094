"""The Gradio app: builds without launching, handlers return the right types, every api_name answers through
gradio_client (bad inputs included) and the server keeps serving, two sessions at once keep their own results, uploads
are size-limited and no other file is served; plus the region names of regions.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_helpers import ASTRONAUT, REPO, TWO_FACES, free_port, import_app, make_checkpoints, write_bad_inputs
from fer_explain.classes import CLASSES
from fer_explain.regions import REGIONS, describe_regions, strongest_regions

API_NAMES = {"analyze", "select_face", "select_class", "decide", "results", "live", "live_frame"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    checkpoint, baseline = make_checkpoints(folder)
    with pytest.MonkeyPatch.context() as mp:
        yield import_app(mp, "fer_app_under_test", checkpoint, baseline)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


# ---- regions -----------------------------------------------------------------------------------------------------
def test_regions_name_every_token_and_rank_cells():
    assert len(REGIONS) == 49 and REGIONS[3 * 7 + 3] == "nose" and REGIONS[5 * 7 + 3] == "mouth"
    grid = np.zeros((7, 7))
    grid[5, 3], grid[2, 2], grid[6, 3] = 0.9, 0.4, -1.5
    assert strongest_regions(grid, k=2) == [("mouth", 0.9), ("left eye", 0.4)]
    assert strongest_regions(grid, k=1, signed=False) == [("chin", -1.5)]
    assert strongest_regions(grid, k=3, against=True) == [("chin", -1.5)]  # only negative cells count against
    text = describe_regions(grid, k=2)
    assert "for: mouth (+0.9)" in text and "against: chin (-1.5)" in text
    with pytest.raises(ValueError):
        strongest_regions(np.zeros((6, 7)))


def test_face_choice_numbers_count_from_one():
    from types import SimpleNamespace

    from fer_explain.app_views import face_index
    from fer_explain.errors import UserError

    two = SimpleNamespace(faces=[object(), object()])
    assert [face_index(c, two) for c in ("Face 2: happy 0.87", "2", 2, None, "")] == [1, 1, 1, 0, 0]
    for bad in (3, "0", "Face x", 0):
        with pytest.raises(UserError):
            face_index(bad, two)


# ---- building and handlers, no server ------------------------------------------------------------------------------
def test_blocks_build_with_models_and_api_names(app):
    import gradio as gr

    assert isinstance(app.demo, gr.Blocks)
    assert app.MODELS.main is not None and app.MODELS.baseline is not None
    assert app.MODELS.main.config.variant == "full" and app.MODELS.baseline.config.variant == "baseline"
    names = {fn.api_name for fn in app.demo.fns.values() if fn.api_visibility == "public"}
    assert API_NAMES <= names, names
    assert all(fn.api_name for fn in app.demo.fns.values() if fn.api_visibility == "public")
    # every example photo of examples/ is offered in the Explain tab (its file copied into Gradio's cache)
    offered = {row[0]["orig_name"] for b in app.demo.blocks.values() if isinstance(b, gr.Dataset) for row in b.samples}
    assert offered == {p.name for p in app.EXAMPLES_DIR.glob("*.*") if p.suffix in (".png", ".jpg")} != set()


def test_handlers_return_the_right_types(app):
    from fer_explain.app_views import Analysis

    out = app.on_analyze(str(ASTRONAUT), False, "predicted")
    assert len(out) == 4 + app.N_EXPLAIN + app.N_COMPARE
    notice, photo, dropdown, analysis = out[:4]
    assert isinstance(analysis, Analysis) and len(analysis.faces) >= 1, notice
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    explain, compare = out[4:4 + app.N_EXPLAIN], out[4 + app.N_EXPLAIN:]
    summary, bars, spatial, token, token_grid, regions, gradcam, faithfulness = explain
    for image in (spatial, token, token_grid, gradcam):
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape[2] == 3
    assert list(bars) == list(CLASSES) and abs(sum(bars.values()) - 1) < 1e-4  # gr.Label's {class: p}
    assert "Face 1" in summary and "Strongest regions" in regions
    assert [row[0] for row in faithfulness][-1].startswith("random") and len(faithfulness) == 4
    assert all(0.0 <= row[1] <= 1.0 and 0.0 <= row[2] <= 1.0 for row in faithfulness)
    assert "agree" in compare[0] and all(isinstance(a, np.ndarray) for a in compare[2:5] + compare[6:11])
    assert all(list(column) == list(CLASSES) for column in (compare[1], compare[5]))
    assert "largest |value|" in compare[11]

    # another class re-explains from the session state: no new detection, one more cache entry per model
    cached = len(analysis.explanations)
    again = app.on_select(analysis, "1", "contempt")
    assert again[1] is analysis and "explain **contempt**" in again[2]
    assert len(analysis.explanations) == cached + 2
    bad = app.on_select(analysis, "7", "contempt")  # face out of range: a message, not an exception
    assert bad[0].startswith("⚠️") and "face 7" in bad[0] and bad[1] is analysis
    assert app.on_select(analysis, "1", "boredom")[0].startswith("⚠️")

    label, overlay = app.on_live(np.array(Image.open(ASTRONAUT).convert("RGB")))
    assert isinstance(label, str) and any(c in label for c in CLASSES), label
    assert overlay is None or overlay.dtype == np.uint8


def test_prior_correction_reweights_both_models_and_keeps_the_maps(app):
    """The slider's tau reaches both models' decisions; a class's maps stay the same; moving the slider before any
    photo was analysed changes nothing, and a bad tau is a message."""
    from fer_explain.decision import adjust_probabilities

    plain = app.on_analyze(str(ASTRONAUT), False, "anger")
    corrected = app.on_analyze(str(ASTRONAUT), False, "anger", 1.5)
    for before, after, predictor in ((plain[3].faces[0].prediction, corrected[3].faces[0].prediction, app.MODELS.main),
                                     (plain[3].baseline_predictions[0], corrected[3].baseline_predictions[0],
                                      app.MODELS.baseline)):
        expected = adjust_probabilities(before.probabilities, predictor.class_prior(), 1.5)
        np.testing.assert_allclose(after.probabilities, expected, rtol=1e-5, atol=1e-7)
        assert after.label_index == int(expected.argmax()) and after.prior_correction == 1.5
    compare_summary = 4 + app.N_EXPLAIN
    assert "prior correction τ = 1.5" in corrected[4] and "prior correction" not in plain[4]
    assert "prior correction τ = 1.5" in corrected[compare_summary] and "prior" not in plain[compare_summary]
    explain_maps = slice(6, 11)  # spatial, token overlay, token grid, regions, Grad-CAM, all of 'anger'
    for a, b in zip(plain[explain_maps], corrected[explain_maps]):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
    skipped = app.on_decision(None, None, "predicted", 1.0)
    assert len(skipped) == 4 + app.N_EXPLAIN + app.N_COMPARE and all(s == app.gr.skip() for s in skipped)
    assert app.on_decision(plain[3], "Face 1: x", "predicted", 1.0)[4].count("τ = 1") == 1
    two = app.on_analyze(str(TWO_FACES), False, "predicted")
    assert len(two[3].faces) == 2 and two[2].value.startswith("Face 1")
    kept = app.on_decision(two[3], two[2].choices[1][0], "predicted", 0.5)
    assert kept[2].value.startswith("Face 2") and kept[4].startswith("**Face 2:**")  # the selected face stays
    assert app.on_decision(plain[3], "Face 2", "predicted", 0.5)[2].value.startswith("Face 1")  # not in this photo
    assert app.on_analyze(str(ASTRONAUT), False, "predicted", 7)[0].startswith("⚠️ the prior correction")
    refused = app.on_decision(plain[3], "1", "predicted", 7)
    assert refused[0].startswith("⚠️ the prior correction") and refused[3] is plain[3]


def test_the_slider_decides_again_without_detection_or_forward_pass(app, monkeypatch):
    """Moving the slider gives what analysing the photo at that tau gives, from the session's analysis: no face
    detection, no forward pass, and the explanations already computed for a class are reused at any tau."""
    from fer_explain import pipeline
    from fer_explain.predictor import Predictor

    plain = app.on_analyze(str(TWO_FACES), False, "predicted")  # face 1 explained, tau = 0
    fresh = app.on_analyze(str(TWO_FACES), False, "predicted", 1.2, "2")
    calls = {"detect": 0, "forward": 0, "explain": 0}

    def counted(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pipeline, "analyze_image", counted("detect", pipeline.analyze_image))
    monkeypatch.setattr(Predictor, "predict", counted("forward", Predictor.predict))
    monkeypatch.setattr(Predictor, "explain", counted("explain", Predictor.explain))
    decided = app.on_decision(plain[3], "2", "predicted", 1.2)
    assert calls["detect"] == calls["forward"] == 0
    assert decided[0] == fresh[0] and decided[2].value == fresh[2].value == decided[2].choices[1][0]
    assert np.array_equal(decided[1], fresh[1])  # the boxes' captions carry the new decision
    for a, b in zip(decided[4:], fresh[4:]):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
    for face, expected in zip(decided[3].faces, fresh[3].faces):
        np.testing.assert_array_equal(face.prediction.probabilities, expected.prediction.probabilities)
        assert face.prediction.attended is plain[3].faces[face.index].prediction.attended  # no new forward pass
    assert calls["explain"] == 2  # face 2's class, for both models: nothing else
    explained = calls["explain"]
    back = app.on_decision(decided[3], "1", "predicted", 0.0)  # face 1 at tau = 0 was explained by /analyze
    assert calls["explain"] == explained and calls["detect"] == calls["forward"] == 0
    for a, b in zip(back[4:], plain[4:]):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


def test_a_new_or_removed_photo_never_leaves_another_photos_explanations(app, tmp_path):
    """Uploading explains at once (what /analyze gives); removing the photo empties every panel and forgets the
    analysis, so the slider has nothing stale to re-decide; the whole-image box re-analyses the photo it is about."""
    n = 4 + app.N_EXPLAIN + app.N_COMPARE
    uploaded = app.on_new_photo(str(TWO_FACES), False, "predicted", 0.5)
    clicked = app.on_analyze(str(TWO_FACES), False, "predicted", 0.5)
    assert len(uploaded) == n and uploaded[0] == clicked[0] and "2 faces found" in uploaded[0]
    for a, b in zip(uploaded[4:], clicked[4:]):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b

    removed = app.on_new_photo(None, False, "predicted", 0.5)
    assert len(removed) == n and removed[3] is None and removed[2].choices == [] and removed[2].value is None
    assert all(not value for value in removed[:2] + removed[4:]), removed  # no image, text or table is left
    assert all(s == app.gr.skip() for s in app.on_decision(removed[3], None, "predicted", 1.0))

    blank = tmp_path / "blank.png"
    Image.new("RGB", (160, 120), "gray").save(blank)
    assert app.on_new_photo(str(blank), False, "predicted")[0].startswith("⚠️ No face found")
    whole = app.on_whole_image(str(blank), True, "predicted")
    assert "whole image" in whole[0] and len(whole[3].faces) == 1 and "Strongest regions" in whole[9]
    assert all(s == app.gr.skip() for s in app.on_whole_image(None, True, "predicted"))


def test_a_slider_moved_during_an_analysis_is_applied_when_it_ends(app, tmp_path):
    """Each analysis is followed by on_settled with the slider's value at that moment: unchanged, nothing happens;
    moved while the analysis ran, both models decide again at the new value (as the slider's own event would)."""
    skipped = [app.gr.skip()] * (4 + app.N_EXPLAIN + app.N_COMPARE)
    done = app.on_analyze(str(TWO_FACES), False, "predicted", 0.4)
    assert app.on_settled(done[3], done[2].value, "predicted", 0.4) == skipped
    settled = app.on_settled(done[3], "2", "predicted", 1.2)
    expected = app.on_decision(done[3], "2", "predicted", 1.2)
    assert "τ = 1.2" in settled[4] and settled[2].value == expected[2].value and settled[2].value.startswith("Face 2")
    assert settled[0] == expected[0] and np.array_equal(settled[1], expected[1])
    assert [f.prediction.prior_correction for f in settled[3].faces] == [1.2, 1.2]
    for a, b in zip(settled[4:], expected[4:]):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
    blank = tmp_path / "blank.png"
    Image.new("RGB", (160, 120), "gray").save(blank)
    no_face = app.on_analyze(str(blank), False, "predicted")[3]
    assert app.on_settled(None, None, "predicted", 1.0) == app.on_settled(no_face, None, "predicted", 1.0) == skipped


def test_a_baseline_with_another_crop_margin_gets_its_maps_over_its_own_crop(tmp_path):
    import dataclasses

    from fer_explain.app_views import LoadedModels, analyze, compare_view
    from fer_explain.predictor import Predictor

    checkpoint, baseline = make_checkpoints(tmp_path)
    main, wide = Predictor(checkpoint, device="cpu"), Predictor(baseline, device="cpu")
    wide.preprocessing = dataclasses.replace(wide.preprocessing, crop_margin=0.4)  # a wider square than main's
    models = LoadedModels(main, wide)
    analysis = analyze(models, str(ASTRONAUT))
    view = compare_view(models, analysis)
    own, other = analysis.faces[0].crop.display, analysis.baseline_crops[0].display
    assert not np.array_equal(own, other)
    # no overlay of the wider square on the narrower one: the baseline's maps sit on what the baseline saw
    spatial_main, spatial_base = view.main[1], view.baseline[1]
    assert np.abs(spatial_base.astype(int) - other.astype(int)).mean() < np.abs(
        spatial_base.astype(int) - own.astype(int)).mean()
    assert spatial_main.shape == spatial_base.shape
    assert view.difference_overlay is None and "different margins" in view.difference_text
    # the same preprocessing: one crop for both, and the difference map is drawn
    same = analyze(LoadedModels(main, Predictor(baseline, device="cpu")), str(ASTRONAUT))
    assert same.baseline_crops is None
    assert compare_view(LoadedModels(main, Predictor(baseline, device="cpu")), same).difference_overlay is not None


def test_the_header_says_whether_each_models_probabilities_are_calibrated(app, tmp_path):
    from fer_explain.app_views import LoadedModels
    from fer_explain.checkpoint import read_metadata, rewrite_metadata
    from fer_explain.predictor import Predictor

    assert app.MODELS.status_markdown().count("; probabilities not calibrated)") == 2
    path = app.MODELS.main.checkpoint_path
    calibrated = rewrite_metadata(path, {**read_metadata(path), "calibration": {"temperature": 0.625}},
                                  tmp_path / "calibrated.safetensors")
    text = LoadedModels(Predictor(calibrated, device="cpu"), app.MODELS.baseline).status_markdown()
    assert "(`" in text and "; calibrated, T = 0.625)" in text and text.count("not calibrated") == 1


def test_bad_inputs_give_messages_not_exceptions(app, bad_files):
    for image in (None, str(bad_files["not_an_image"]), str(bad_files["one_pixel"])):
        out = app.on_analyze(image, False, "predicted")
        assert out[0].startswith("⚠️") and out[3] is None, out[0]
    out = app.on_analyze(str(bad_files["too_many_pixels"]), False, "predicted")
    # named by the file's own name: an upload's path in the server's temporary folder is not the visitor's business
    assert out[0] == "⚠️ huge.png: image too large (8000x7000 = 56 megapixels; the limit is 50)", out[0]
    out = app.on_analyze(str(bad_files["no_face"]), False, "predicted")
    assert out[0].startswith("⚠️") and "no face" in out[0].lower() and out[3] is not None and not out[3].faces
    whole = app.on_analyze(str(bad_files["no_face"]), True, "predicted")  # whole picture as one face
    assert len(whole[3].faces) == 1 and list(whole[5]) == list(CLASSES)
    assert app.on_select(None, "1", "happy")[0].startswith("⚠️")


def test_app_without_checkpoints_still_builds(tmp_path, monkeypatch, capsys):
    missing = import_app(monkeypatch, "fer_app_without_models", tmp_path / "none.safetensors",
                         tmp_path / "none_baseline.safetensors")
    assert missing.MODELS.main is None
    assert "No model checkpoint" in capsys.readouterr().err
    page_text = " ".join(str(getattr(b, "value", "")) for b in missing.demo.blocks.values())
    assert "No model checkpoint" in page_text
    assert "No model checkpoint" in missing.on_analyze(str(ASTRONAUT), False, "predicted")[0]
    assert "No model checkpoint" in missing.on_live(np.zeros((64, 64, 3), np.uint8))[0]


# ---- through the server ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(app):
    """The app launched on a free localhost port, as `python app.py` launches it; its URL."""
    port = free_port()
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                    **app.LAUNCH_OPTIONS)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.demo.close()


def test_every_api_name_through_gradio_client(server, bad_files):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {f"/{name}" for name in API_NAMES} <= endpoints, endpoints

    out = client.predict(handle_file(str(ASTRONAUT)), False, "predicted", api_name="/analyze")
    notice, photo, face = out[0], out[1], out[2]["value"]  # the face selector comes back as an update
    assert "face" in notice.lower() and photo and face.startswith("Face 1"), out[:3]
    assert out[3].startswith("**Face 1") and isinstance(out[10], dict)  # summary, faithfulness table

    out = client.predict(face, "predicted", api_name="/select_face")  # the session's state is used
    assert out[1].startswith("**Face 1")
    out = client.predict(face, "surprise", api_name="/select_class")
    assert "explain **surprise**" in out[1]

    results_text, gallery = client.predict(api_name="/results")
    assert "results" in results_text.lower()

    # /live is the webcam stream (browsers only: this gradio_client cannot read streaming events);
    # /live_frame runs the same handler on one frame
    label, overlay = client.predict(handle_file(str(ASTRONAUT)), api_name="/live_frame")
    assert any(c in label for c in CLASSES), label

    for bad in (None, handle_file(str(bad_files["not_an_image"])), handle_file(str(bad_files["one_pixel"]))):
        out = client.predict(bad, False, "predicted", api_name="/analyze")
        assert out[0].startswith("⚠️"), out[0]
    out = client.predict(handle_file(str(bad_files["too_many_pixels"])), False, "predicted", api_name="/analyze")
    assert out[0].startswith("⚠️ huge.png: image too large"), out[0]
    out = client.predict(handle_file(str(bad_files["no_face"])), False, "predicted", api_name="/analyze")
    assert out[0].startswith("⚠️") and "no face" in out[0].lower(), out[0]
    assert client.predict("9", "happy", api_name="/select_face")[0].startswith("⚠️")

    # still serving after all that
    out = client.predict(handle_file(str(ASTRONAUT)), False, "happy", api_name="/analyze")
    assert "explain **happy**" in out[3]
    out = client.predict(handle_file(str(ASTRONAUT)), False, "happy", 1.0, api_name="/analyze")  # the slider's tau
    assert "prior correction τ = 1" in out[3], out[3]
    decided = client.predict("1", "happy", 0.0, api_name="/decide")  # the slider let go at 0: the same photo
    assert decided[3].startswith("**Face 1") and "prior correction" not in decided[3], decided[3]
    assert client.predict("1", "happy", 1.0, api_name="/decide")[3] == out[3]


def test_concurrent_users_get_their_own_results(server):
    """Two visitors at once: each session keeps its own photo, so face 2 exists for one of them only."""
    from gradio_client import Client, handle_file

    one, two = Client(server, verbose=False), Client(server, verbose=False)
    jobs = [one.submit(handle_file(str(ASTRONAUT)), False, "predicted", api_name="/analyze"),
            two.submit(handle_file(str(TWO_FACES)), False, "predicted", api_name="/analyze")]
    notices = [job.result(timeout=120)[0] for job in jobs]
    assert notices[0].startswith("1 face found") and notices[1].startswith("2 faces found"), notices
    assert two.predict("2", "happy", api_name="/select_face")[1].startswith("**Face 2")
    assert one.predict("2", "happy", api_name="/select_face")[0].startswith("⚠️ face 2 does not exist")


def test_uploads_are_limited_and_no_other_file_is_served(server):
    """The upload route refuses a file over MAX_FILE_SIZE; /file= serves none of the server's own files."""
    import httpx

    limit = httpx.get(server + "config", timeout=30).json()["max_file_size"]
    assert limit == 10 * 1024 * 1024  # app.MAX_FILE_SIZE, "10mb", as the page announces it
    response = httpx.post(server + "gradio_api/upload", files={"files": ("big.png", b"\0" * (limit + 1))}, timeout=60)
    assert response.status_code == 413, response.status_code
    for path in (REPO / "app.py", REPO / "checkpoints" / "README.md", ASTRONAUT, Path("/etc/passwd")):
        relative = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else "../" * 8 + "etc/passwd"
        for spelling in (str(path), relative):
            status = httpx.get(f"{server}gradio_api/file={spelling}", timeout=30).status_code
            assert status in (403, 404), (spelling, status)
    assert httpx.get(server, timeout=30).status_code == 200  # and still serving
