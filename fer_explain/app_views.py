"""What the Gradio app shows, computed from the library alone: plain Python in, numpy images / Markdown / rows out.

`app.py` only lays these out and wires events; nothing here imports gradio, so every view is testable (and usable
from a notebook) without a server. The analysis of a photo (faces, both models' predictions, explanations already
computed) is an `Analysis` kept in the browser session, so switching face or class, or moving the prior-correction
slider (`decide`), never re-detects.

Token maps of the two models are compared after the same normalisation: each signed map is divided by its own
largest |value| (so each lies in [-1, 1] with its sign kept), and the difference Bi-LSTM - baseline lies in [-2, 2].
Integrated-gradient totals differ between the models (they sum to each model's own logit change), so only this
shape of the evidence is comparable, not the raw magnitudes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_explain.classes import CLASSES, PREDICTED, parse_target
from fer_explain.decision import check_prior_correction
from fer_explain.errors import UserError
from fer_explain.model_card import shown_path
from fer_explain.predictor import FAITHFULNESS_TOKENS_PER_STEP
from fer_explain.regions import SIDE_CONVENTION, describe_regions

TARGET_CHOICES = (PREDICTED, *CLASSES)
METHODS = ("spatial_attention", "token_saliency", "gradcam")
METHOD_TITLES = {"spatial_attention": "Spatial attention (eq. 2)", "token_saliency": "Bi-LSTM token saliency (IG)",
                 "gradcam": "Grad-CAM", "random": "random order (reference)"}
MAX_FACES = 20
# Deletion/insertion in the app: 7 tokens (one grid row's worth) per step, as the `explain` command, but 2 random
# reference orders instead of 3, so a page answers in time on a CPU.
FAITHFULNESS = {"faithfulness_step": FAITHFULNESS_TOKENS_PER_STEP, "faithfulness_random": 2}
NO_MODEL = ("No model checkpoint is loaded, so nothing can be predicted. Train one (see training/) and put it in "
            "checkpoints/, or start the app with --checkpoint FILE (or FER_CHECKPOINT=hf://owner/repo/file).")


@dataclass
class LoadedModels:
    main: object | None  # fer_explain.predictor.Predictor (the Bi-LSTM model)
    baseline: object | None  # the same network without the Bi-LSTM
    notices: list[str] = field(default_factory=list)
    device: str = "cpu"

    def status_markdown(self) -> str:
        def line(kind, predictor):
            if predictor is None:
                return f"**{kind}:** not loaded"
            # whether the bars can be read as frequencies (fer_explain.temperature)
            calibration = (f"calibrated, T = {predictor.temperature:.3g}" if predictor.temperature != 1
                           else "probabilities not calibrated")
            return f"**{kind}:** {predictor.name} (`{shown_path(predictor.checkpoint_path)}`; {calibration})"
        text = " · ".join([f"**Device:** {self.device.upper()}", line("Bi-LSTM model", self.main),
                           line("Baseline", self.baseline)])
        return text + "".join(f"\n\n> ⚠️ {n}" for n in self.notices)


def load_models(checkpoint: str | None = None, baseline: str | None = None, device: str = "auto") -> LoadedModels:
    """Both predictors, loaded once. A missing/broken checkpoint becomes a notice (and a line on stderr), not a
    crash."""
    from fer_explain.pipeline import default_checkpoint
    from fer_explain.device import pick_device
    from fer_explain.predictor import Predictor

    loaded = LoadedModels(None, None, [], str(pick_device(device)))
    for attr, spec, is_baseline, kind in (("main", checkpoint, False, "Bi-LSTM model"),
                                          ("baseline", baseline, True, "baseline")):
        try:
            path = spec or default_checkpoint(baseline=is_baseline)
            setattr(loaded, attr, Predictor(str(path), device=device))
        except UserError as e:
            loaded.notices.append(f"{kind} not loaded: {e}")
    if loaded.main is None:
        loaded.notices.insert(0, NO_MODEL)
    for notice in loaded.notices:
        print(f"fer-explain app: {notice}", file=sys.stderr)
    return loaded


@dataclass
class Analysis:
    result: object  # fer_explain.pipeline.ImageResult from the Bi-LSTM model
    baseline_predictions: list | None  # FacePrediction per face from the baseline
    baseline_crops: list | None = None  # FaceCrop per face as the baseline saw it (its own crop_margin); None: the same
    explanations: dict = field(default_factory=dict)  # (model key, face, target) -> FaceExplanation

    @property
    def faces(self):
        return self.result.faces


def require_models(models: LoadedModels):
    if models.main is None:
        raise UserError(NO_MODEL)


def analyze(models: LoadedModels, image, whole_image: bool = False, max_faces: int = MAX_FACES,
            prior_correction: float = 0.0) -> Analysis:
    """Detect, crop and predict with both models (one batched forward pass each), both deciding with the same
    prior correction tau (fer_explain.decision). UserError on unusable input."""
    from fer_explain.faces import crop_face, to_tensor
    from fer_explain.image_io import load_image
    from fer_explain.pipeline import analyze_image

    require_models(models)
    tau = check_prior_correction(prior_correction)
    if image is None or (isinstance(image, str) and not image.strip()):
        raise UserError("no image given: upload a photo, take one with the webcam or paste one")
    # an upload is a file in the server's temporary folder: messages name it by its own name, not by that path
    name = Path(image).name if isinstance(image, (str, Path)) else None
    result = analyze_image(models.main, load_image(image, name=name), whole_image=whole_image, max_faces=max_faces,
                           prior_correction=tau)
    baseline_predictions = baseline_crops = None
    if models.baseline is not None and result.faces:
        crops = [face.crop for face in result.faces]
        if models.baseline.preprocessing != models.main.preprocessing:
            # the baseline was trained with another input format: crop the same boxes its way
            crops = baseline_crops = [crop_face(result.image, face.crop.box, models.baseline.preprocessing)
                                      for face in result.faces]
        baseline_predictions = models.baseline.predict(to_tensor(crops), prior_correction=tau)
    return Analysis(result, baseline_predictions, baseline_crops)


def decide(models: LoadedModels, analysis: Analysis, prior_correction: float) -> Analysis:
    """The analysed photo decided again with prior correction tau, by both models: no detection and no forward
    pass. The session's explanations carry over, since a class's maps do not depend on tau: only a class that
    becomes the predicted one for the first time is explained anew."""
    require_models(models)
    tau = check_prior_correction(prior_correction)
    faces = [replace(face, prediction=models.main.decide(face.prediction, tau)) for face in analysis.faces]
    baseline_predictions = analysis.baseline_predictions
    if baseline_predictions is not None:
        baseline_predictions = [models.baseline.decide(p, tau) for p in baseline_predictions]
    return Analysis(replace(analysis.result, faces=faces), baseline_predictions, analysis.baseline_crops,
                    analysis.explanations)


def notices_markdown(analysis: Analysis) -> str:
    faces = analysis.faces
    lines = list(analysis.result.notices)
    if faces:
        lines.insert(0, f"{len(faces)} face{'s' if len(faces) != 1 else ''} found (numbered left to right).")
    return "\n\n".join(lines)


def face_choices(analysis: Analysis) -> list[str]:
    return [f"Face {f.index + 1}: {f.caption}" for f in analysis.faces]


def face_index(choice, analysis: Analysis) -> int:
    """Dropdown value ("Face 2: happy 0.87", "2" or 2: all 1-based, as the page numbers faces) -> 0-based index,
    checked."""
    n = len(analysis.faces)
    if n == 0:
        raise UserError("no face in this photo; tick 'whole image' to classify the whole picture as one face")
    if choice is None or choice == "":
        return 0
    text = str(choice).split(":")[0].replace("Face", "").strip()
    try:
        # an API client may send the number itself; it counts from 1 like the labels, not from 0
        index = (int(text) if isinstance(choice, str) else int(choice)) - 1
    except (ValueError, TypeError, OverflowError):
        raise UserError(f"unknown face {choice!r}; choose one of 1..{n}") from None
    if not 0 <= index < n:
        raise UserError(f"face {index + 1} does not exist; this photo has {n} face(s)")
    return index


def _explain(predictor, key: str, analysis: Analysis, index: int, prediction, target: str | None,
             faithfulness: bool = True):
    """One FaceExplanation, computed once per (model, face, class) and kept in the session's analysis.

    Faithfulness uses the coarser, interactive settings of FAITHFULNESS; the baseline (whose faithfulness the page
    does not show) skips it."""
    cache_key = (key, index, target if target is not None else prediction.label)
    if cache_key not in analysis.explanations:
        # a method the model cannot give (spatial attention when ablated) comes back in `.unavailable`
        explanation = predictor.explain(prediction, target=target, methods=METHODS, faithfulness=faithfulness,
                                        **FAITHFULNESS)
        analysis.explanations[cache_key] = explanation
    return analysis.explanations[cache_key]


def _overlay(display, explanation, method):
    from fer_explain.render import overlay_heatmap

    item = explanation.maps.get(method)
    return None if item is None else overlay_heatmap(display, item.grid, signed=item.signed)


def faithfulness_rows(explanation) -> list[list]:
    """[method, deletion AUC (lower = more faithful), insertion AUC (higher = more faithful)] per map + random."""
    return [[METHOD_TITLES.get(method, method), round(float(scores["deletion_auc"]), 4),
             round(float(scores["insertion_auc"]), 4)] for method, scores in explanation.faithfulness.items()]


@dataclass
class ExplainView:
    summary: str  # Markdown
    bars: dict[str, float]  # class -> probability, for gr.Label (drawn by the browser, not by matplotlib)
    spatial: np.ndarray | None
    token_overlay: np.ndarray | None
    token_grid: np.ndarray | None
    regions: str  # Markdown naming the strongest token cells
    gradcam: np.ndarray | None
    faithfulness: list[list]


def explain_view(models: LoadedModels, analysis: Analysis, face=None, target=None) -> ExplainView:
    from fer_explain.render import grid_figure

    require_models(models)
    index, target = face_index(face, analysis), parse_target(target)
    face_result = analysis.faces[index]
    prediction, display = face_result.prediction, face_result.crop.display
    explanation = _explain(models.main, "main", analysis, index, prediction, target)
    probs = np.asarray(prediction.probabilities)
    summary = (f"**Face {index + 1}:** predicted **{prediction.label}** ({probs[prediction.label_index]:.1%}); "
               f"maps explain **{explanation.target}** ({probs[explanation.target_index]:.1%}).")
    token = explanation.maps.get("token_saliency")
    regions = "Token saliency not available."
    token_grid = None
    if token is not None:
        token_grid = grid_figure(token.grid, True, f"IG attribution to '{explanation.target}' per token")
        regions = (f"**Strongest regions** ({SIDE_CONVENTION}): {describe_regions(token.grid, k=3)}\n\n"
                   "Red = evidence for the class, blue = against; values are integrated-gradient attributions "
                   "summed over channels (they add up to the logit change from an all-zero token sequence).")
    if prediction.prior_correction:
        summary += (f" Decided with prior correction τ = {prediction.prior_correction:g}: probabilities reweighted "
                    "by 1 / (training frequency)^τ; the maps of a class are the same at any τ.")
    if "spatial_attention" not in explanation.maps:
        summary += "\n\nThis model has no spatial attention, so there is no attention map."
    return ExplainView(summary, class_probabilities(probs, models.main.classes),
                       _overlay(display, explanation, "spatial_attention"), _overlay(display, explanation,
                       "token_saliency"), token_grid, regions, _overlay(display, explanation, "gradcam"),
                       faithfulness_rows(explanation))


def class_probabilities(probabilities, classes) -> dict[str, float]:
    """{class: p} for gr.Label: the browser draws the bars, which saves a matplotlib figure per model per request."""
    return {name: float(p) for name, p in zip(classes, np.asarray(probabilities))}


@dataclass
class CompareView:
    summary: str  # Markdown: both predictions, agree or not, which class the maps explain
    main: list  # [{class: p}, spatial, token, gradcam images (None where unavailable)]
    baseline: list
    difference_overlay: np.ndarray | None
    difference_grid: np.ndarray | None
    difference_text: str


def compare_view(models: LoadedModels, analysis: Analysis, face=None, target=None) -> CompareView:
    """Both models on the same face. Both are explained for the SAME class (the chosen one, or the Bi-LSTM's
    prediction) so that their maps answer the same question."""
    from fer_explain.render import grid_figure, normalise_grid, overlay_heatmap

    require_models(models)
    if models.baseline is None or analysis.baseline_predictions is None:
        raise UserError("no baseline checkpoint is loaded: start the app with --baseline FILE "
                        "(or put a *baseline*.safetensors file in checkpoints/)")
    index, target = face_index(face, analysis), parse_target(target)
    face_result = analysis.faces[index]
    main_pred, base_pred = face_result.prediction, analysis.baseline_predictions[index]
    shared_target = target if target is not None else main_pred.label
    main_exp = _explain(models.main, "main", analysis, index, main_pred, shared_target)
    base_exp = _explain(models.baseline, "baseline", analysis, index, base_pred, shared_target, faithfulness=False)
    display = face_result.crop.display
    # each model's maps over the square it saw: with another crop_margin the same 7x7 cell covers another region
    base_display = display if analysis.baseline_crops is None else analysis.baseline_crops[index].display
    same_square = models.baseline.preprocessing.crop_margin == models.main.preprocessing.crop_margin

    def column(predictor, prediction, explanation, face_display):
        return [class_probabilities(prediction.probabilities, predictor.classes),
                *(_overlay(face_display, explanation, m) for m in METHODS)]

    agree = main_pred.label == base_pred.label
    summary = (f"**Face {index + 1}** — Bi-LSTM: **{main_pred.label}** "
               f"({main_pred.probabilities[main_pred.label_index]:.1%}) · baseline: **{base_pred.label}** "
               f"({base_pred.probabilities[base_pred.label_index]:.1%}) → "
               f"{'**they agree**' if agree else '**they disagree**'}. Maps explain **{shared_target}** for both.")
    if main_pred.prior_correction:
        summary += f" Both decided with prior correction τ = {main_pred.prior_correction:g}."
    diff_overlay = diff_grid = None
    diff_text = "Token saliency is missing for one of the models."
    if not same_square:
        diff_text = ("No difference map: the two models crop the face with different margins "
                     f"({models.main.preprocessing.crop_margin:g} and {models.baseline.preprocessing.crop_margin:g} "
                     "per side), so their 7×7 cells cover different parts of the face.")
    elif "token_saliency" in main_exp.maps and "token_saliency" in base_exp.maps:
        # the module docstring's normalisation: each signed map / its own largest |value|
        diff = (normalise_grid(main_exp.maps["token_saliency"].grid, signed=True)
                - normalise_grid(base_exp.maps["token_saliency"].grid, signed=True))
        diff_overlay = overlay_heatmap(display, diff, signed=True)
        diff_grid = grid_figure(diff, True, "Bi-LSTM minus baseline (each map / its max |value|)")
        diff_text = (f"Each token map is divided by its own largest |value| (range [-1, 1]), then baseline is "
                     f"subtracted from Bi-LSTM (range [-2, 2]). Red: the Bi-LSTM relies more on this cell. "
                     f"Largest differences ({SIDE_CONVENTION}): {describe_regions(diff, k=3)}")
    return CompareView(summary, column(models.main, main_pred, main_exp, display),
                       column(models.baseline, base_pred, base_exp, base_display), diff_overlay, diff_grid, diff_text)
