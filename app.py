"""Gradio app: emotions of the faces in a photo, the Bi-LSTM model's three explanations, the no-Bi-LSTM baseline beside
it, a live webcam view and the model card. A thin shell: every number and image comes from `fer_explain`
(`app_views` and `live_view` for the views, `model_card` for the card); this file only lays them out and wires the
events. A new photo is explained as soon as it arrives (the Analyze button runs it again); a slider sets the
decision rule's prior correction (`fer_explain.decision`) for every tab.

    python app.py [--checkpoint FILE|hf://owner/repo/file] [--baseline FILE] [--device auto|cpu|cuda] [--port 7860]

Checkpoints: --checkpoint/--baseline, else FER_CHECKPOINT/FER_BASELINE, else checkpoints/*.safetensors (the file whose
name lacks "baseline" is the Bi-LSTM model, the one containing "baseline" the baseline). Both are loaded once, at
import. Without a checkpoint the page still builds and says so (and so does every handler).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

import gradio as gr

from fer_explain import app_views as views
from fer_explain import model_card
from fer_explain.app_widgets import grid_box, image_box, tolerant
from fer_explain.classes import parse_target
from fer_explain.decision import MAX_PRIOR_CORRECTION
from fer_explain.errors import UserError
from fer_explain.live_view import live_view

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
MAX_FILE_SIZE = "10mb"
CONCURRENCY = 2  # one request per CPU core on the reference machine; more would only slow each one down


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.environ.get("FER_CHECKPOINT"), help="Bi-LSTM model (path or hf://...)")
    p.add_argument("--baseline", default=os.environ.get("FER_BASELINE"), help="baseline model (path or hf://...)")
    p.add_argument("--device", default=os.environ.get("FER_DEVICE", "auto"), help="auto, cpu or cuda")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="public gradio.live link (off by default)")
    return p.parse_args(argv)


# Under `python app.py` the command line counts; when imported (tests, `gradio app.py`) only the environment does.
ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
try:
    MODELS = views.load_models(ARGS.checkpoint, ARGS.baseline, ARGS.device)
except UserError as e:  # e.g. --device cuda without CUDA: the page still builds and shows why
    print(f"fer-explain app: {e}", file=sys.stderr)
    MODELS = views.LoadedModels(None, None, [str(e), views.NO_MODEL], "cpu")


def problem(error: Exception, toast: bool = True) -> str:
    """A visible one-line message for the page (and the API) instead of a stack trace."""
    if isinstance(error, UserError):
        message = str(error)
    else:  # a bug: the trace goes to the server log, the page keeps working
        traceback.print_exception(error, file=sys.stderr)
        message = f"internal error ({type(error).__name__}: {error}); the app is still running"
    if toast:
        gr.Warning(message)
    return f"⚠️ {message}"


N_EXPLAIN, N_COMPARE = 8, 12


def explain_cleared(message: str) -> list:
    """The Explain tab's 8 outputs with only a message: images emptied, the faithfulness table too."""
    return [message] + [None] * (N_EXPLAIN - 2) + [[]]


def compare_cleared(message: str) -> list:
    """The Compare tab's 12 outputs with only a message (summary first, difference text last)."""
    return [message] + [None] * (N_COMPARE - 2) + [""]


def face_outputs(analysis, face, target) -> list:
    """The Explain tab's 8 outputs and the Compare tab's 12 for one face and class."""
    try:
        v = views.explain_view(MODELS, analysis, face, target)
        out = [v.summary, v.bars, v.spatial, v.token_overlay, v.token_grid, v.regions, v.gradcam, v.faithfulness]
    except Exception as e:
        out = explain_cleared(problem(e))
    try:
        c = views.compare_view(MODELS, analysis, face, target)
        out += [c.summary, *c.main, *c.baseline, c.difference_overlay, c.difference_grid, c.difference_text]
    except Exception as e:
        out += compare_cleared(problem(e, toast=MODELS.baseline is not None))
    return out


def empty_outputs(message: str) -> list:
    return explain_cleared(message) + compare_cleared("")


def nothing_analysed(message: str) -> list:
    """Every output of an analysis event when there is no analysis: the message, no photo, faces or state."""
    return [message, None, gr.Dropdown(choices=[], value=None), None] + empty_outputs(message)


def unchanged() -> list:
    """Every output of an analysis event left as it is."""
    return [gr.skip()] * (4 + N_EXPLAIN + N_COMPARE)


def on_analyze(image, whole_image, target, prior_correction=0.0, face=None):
    """Photo -> notice, annotated photo, face selector, session state, then the views of face 1 (or of `face`, the
    1-based number of a face to keep selected, when it exists)."""
    try:
        analysis = views.analyze(MODELS, image, bool(whole_image), prior_correction=prior_correction)
    except Exception as e:
        return nothing_analysed(problem(e))
    return analysis_outputs(analysis, face, target)


def analysis_outputs(analysis, face, target) -> list:
    """Notice, annotated photo, face selector and session state for an analysis, then the views of `face`."""
    notice, photo = views.notices_markdown(analysis), analysis.result.annotated()
    choices = views.face_choices(analysis)
    if not choices:  # marked like every other bad input, so an API client can test for it the same way
        message = f"⚠️ {notice or 'No face found.'}"
        gr.Warning(notice or "No face found.")
        return [message, photo, gr.Dropdown(choices=[], value=None), analysis] + empty_outputs(message)
    try:
        chosen = choices[views.face_index(face, analysis)]
    except UserError:  # that face is not in this photo
        chosen = choices[0]
    return ([notice, photo, gr.Dropdown(choices=choices, value=chosen), analysis]
            + face_outputs(analysis, chosen, target))


def on_select(analysis, face, target):
    """Another face or class: re-explain from the session's analysis (no new detection or forward pass)."""
    try:
        if analysis is None:
            raise UserError("analyze a photo first")
        views.face_index(face, analysis), parse_target(target)  # a wrong choice: one message, up front
    except UserError as e:
        message = problem(e)
        return [message, analysis] + empty_outputs(message)
    return [views.notices_markdown(analysis), analysis] + face_outputs(analysis, face, target)


def on_new_photo(image, whole_image, target, prior_correction=0.0):
    """A photo was uploaded, taken or pasted: explain it at once. Removed: empty every panel and forget the analysis.
    Either way the page never shows one photo's explanations (or lets the slider re-decide it) beside another."""
    if image is None:
        return nothing_analysed("")
    return on_analyze(image, whole_image, target, prior_correction)


def on_whole_image(image, whole_image, target, prior_correction=0.0):
    """The whole-image box was ticked or unticked: analyse the photo again that way (nothing to do without one)."""
    if image is None:
        return unchanged()
    return on_analyze(image, whole_image, target, prior_correction)


def on_decision(analysis, face, target, prior_correction):
    """The prior-correction slider moved: both models decide again on the photo already analysed, without detecting
    or running the networks again, and the selected face stays (nothing happens before a photo is analysed)."""
    if analysis is None:
        return unchanged()
    try:
        decided = views.decide(MODELS, analysis, prior_correction)
    except Exception as e:  # a bad tau (only an API client can send one): a message; the analysis is kept
        message = problem(e)
        return [message, gr.skip(), gr.skip(), analysis] + empty_outputs(message)
    return analysis_outputs(decided, face, target)


def on_settled(analysis, face, target, prior_correction):
    """After every analysis: if the slider was moved while it ran (the analysis used the value at its start), decide
    again at the slider's value now, so that the panels always say the τ the slider shows."""
    faces = [] if analysis is None else analysis.faces
    if not faces or faces[0].prediction.prior_correction == float(prior_correction):
        return unchanged()
    return on_decision(analysis, face, target, prior_correction)


def on_live(frame, prior_correction=0.0):
    try:
        return live_view(MODELS, frame, prior_correction=prior_correction)
    except Exception as e:
        return problem(e, toast=False), None


def on_results():
    images = model_card.results_images()
    return model_card.results_markdown(stems=model_card.COMPARE_TABLES), gr.Gallery(value=images, visible=bool(images))


with gr.Blocks(title="fer-explain: emotions and their explanations") as demo:
    gr.Markdown("# Facial emotion recognition, explained\nBi-LSTM enhanced dual attention network "
                "(ResNet → channel attention → spatial attention → Bi-LSTM over the 7x7 map) and a no-Bi-LSTM "
                "baseline. A research demo: **not for decisions about people** (see the Model card tab).")
    gr.Markdown(MODELS.status_markdown(), elem_id="status")
    analysis_state = gr.State(None)

    with gr.Tab("Explain"):
        with gr.Row():
            with gr.Column(scale=2):
                photo = tolerant(gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                                          image_mode=None, label="Photo (upload, webcam or paste)", height=320))
                whole_image = gr.Checkbox(False, label="No face found? Classify the whole picture as one face")
                prior_correction = gr.Slider(
                    0, MAX_PRIOR_CORRECTION, value=0, step=0.05, label="Favour rare emotions (prior correction τ)",
                    info="0 = the model as trained. Above 0 the decision favours emotions that were rare in training "
                         "(contempt, disgust, fear), trading overall accuracy for accuracy on those; on calibrated "
                         "models 1 treats every emotion as equally likely (results/prior_correction.md). The maps of "
                         "an emotion stay the same.",
                    elem_id="prior_correction")
                analyze_button = gr.Button("Analyze", variant="primary")
                examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.*") if p.suffix in (".png", ".jpg"))
                example_set = None if not examples else gr.Examples(
                    [[p] for p in examples], inputs=[photo], label="Examples (public domain): click one to explain it")
            with gr.Column(scale=3):
                notice = gr.Markdown(elem_id="notice")
                annotated = image_box("Faces found", height=380)
        with gr.Row():
            face_select = gr.Dropdown(choices=[], label="Face", allow_custom_value=True, scale=1)
            target_select = gr.Dropdown(list(views.TARGET_CHOICES), value=views.PREDICTED, allow_custom_value=True,
                                        label="Explain which emotion", scale=1)
        summary = gr.Markdown()
        with gr.Row(equal_height=True):
            bars = gr.Label(num_top_classes=8, label="Probabilities (8 classes)")
            spatial = image_box("Spatial attention (eq. 2)")
            gradcam = image_box("Grad-CAM on the attended map")
        with gr.Row(equal_height=True):
            token_overlay = image_box("Bi-LSTM token saliency")
            token_grid = grid_box("Token saliency per cell")
            regions = gr.Markdown()
        faithfulness = gr.Dataframe(headers=["map", "deletion AUC ↓", "insertion AUC ↑"], interactive=False,
                                    label="Faithfulness: area under the target probability (the model's own "
                                          "softmax, before calibration and any prior correction) as the 49 tokens "
                                          "are removed (deletion; lower = more faithful) or inserted (insertion; "
                                          "higher = more faithful) in the map's order, 7 per step; random orders "
                                          "for reference")

    with gr.Tab("Compare with baseline"):
        compare_summary = gr.Markdown("Analyze a photo in the Explain tab; the selected face is compared here.")
        compare_columns = {}
        with gr.Row():
            for key, title in (("main", "Bi-LSTM model"), ("baseline", "Baseline (global average pooling)")):
                with gr.Column():
                    gr.Markdown(f"### {title}")
                    compare_columns[key] = [gr.Label(num_top_classes=8, label="probabilities")]
                    with gr.Row():
                        compare_columns[key] += [image_box(t, 200) for t in ("attention", "tokens", "Grad-CAM")]
        with gr.Row(equal_height=True):
            diff_overlay = image_box("tokens: Bi-LSTM − baseline", 240)
            diff_grid = grid_box("difference per cell", 240)
            diff_text = gr.Markdown()
        gr.Markdown("## On the test set (from `results/`)")
        results_gallery_items = model_card.results_images()
        results_md = gr.Markdown(model_card.results_markdown(stems=model_card.COMPARE_TABLES))
        results_gallery = gr.Gallery(results_gallery_items, label="Confusion matrices and curves", columns=3,
                                     height="auto", object_fit="contain", visible=bool(results_gallery_items))
        refresh = gr.Button("Reload results/", size="sm")

    with gr.Tab("Live"):
        gr.Markdown("Webcam frames are classified a few times a second (prediction only, with the Explain tab's "
                    "prior correction; the largest face's spatial attention is shown). Frames that arrive while one "
                    "is processed are dropped.")
        with gr.Row():
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", height=320)
            with gr.Column():
                live_label = gr.Markdown(elem_id="live_label")
                live_overlay = image_box("Spatial attention of the largest face", 224, elem_id="live_overlay")
        # The same handler for API clients, one frame per call: gradio_client 2.7 cannot read the stream event's
        # "process_streaming" messages (KeyError in Status.msg_to_status), so /live serves browsers only.
        live_frame_button = gr.Button(visible=False)

    with gr.Tab("Model card"):
        gr.Markdown(model_card.model_card_markdown(MODELS))

    explain_outputs = [summary, bars, spatial, token_overlay, token_grid, regions, gradcam, faithfulness]
    compare_outputs = [compare_summary, *compare_columns["main"], *compare_columns["baseline"], diff_overlay,
                       diff_grid, diff_text]
    face_views = explain_outputs + compare_outputs
    analyze_event = dict(fn=on_analyze, inputs=[photo, whole_image, target_select, prior_correction],
                         outputs=[notice, annotated, face_select, analysis_state] + face_views)
    settled_event = dict(fn=on_settled, inputs=[analysis_state, face_select, target_select, prior_correction],
                         outputs=analyze_event["outputs"], api_visibility="undocumented", show_progress="hidden")
    analyze_button.click(**analyze_event, api_name="analyze").then(**settled_event)
    # a new photo is explained without a click, and a removed one takes its explanations with it
    # always_last: a photo changed while the previous one is being analysed is analysed next (with "once", the
    # default, that change would be dropped and the panels would show the previous photo)
    photo.input(**{**analyze_event, "fn": on_new_photo}, api_visibility="undocumented",
                trigger_mode="always_last").then(**settled_event)
    whole_image.input(**{**analyze_event, "fn": on_whole_image}, api_visibility="undocumented",
                      trigger_mode="always_last").then(**settled_event)
    if example_set is not None:  # a visitor who clicks an example sees it explained without another click
        example_set.load_input_event.then(**analyze_event, api_visibility="undocumented").then(**settled_event)
    select_event = dict(fn=on_select, inputs=[analysis_state, face_select, target_select],
                        outputs=[notice, analysis_state] + face_views)
    prior_correction.release(on_decision, inputs=[analysis_state, face_select, target_select, prior_correction],
                             outputs=analyze_event["outputs"], api_name="decide")
    face_select.input(**select_event, api_name="select_face")
    target_select.input(**select_event, api_name="select_class")
    refresh.click(on_results, outputs=[results_md, results_gallery], api_name="results")
    camera.stream(on_live, inputs=[camera, prior_correction], outputs=[live_label, live_overlay], api_name="live",
                  stream_every=0.3, time_limit=120, concurrency_limit=CONCURRENCY, trigger_mode="always_last",
                  show_progress="hidden")
    live_frame_button.click(on_live, inputs=[camera, prior_correction], outputs=[live_label, live_overlay],
                            api_name="live_frame", concurrency_limit=CONCURRENCY)

demo.queue(default_concurrency_limit=CONCURRENCY)

LAUNCH_OPTIONS = dict(max_file_size=MAX_FILE_SIZE, theme=gr.themes.Soft(), show_error=False)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), server_port=ARGS.port,
                share=ARGS.share, **LAUNCH_OPTIONS)
