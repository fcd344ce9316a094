"""From a photo to per-face predictions: detect, crop, ONE batched forward pass; plus the JSON-ready records.

Shared by the command line (`predict`, `explain`) and the Gradio app, so neither holds model logic. Never imports
gradio. `analyze_many` batches the faces of several images (e.g. video frames) into predict calls of `batch_size`
faces; `analyze_image` is its one-image case.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_explain.classes import CLASSES
from fer_explain.errors import UserError

if TYPE_CHECKING:  # the detector, torch and the explainers load only when an image is analysed
    import PIL.Image

    from fer_explain.faces import FaceCrop
    from fer_explain.predictor import FacePrediction

# The repository's own checkpoints folder (the app and the CLI share this default).
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


@dataclass
class FaceResult:
    index: int  # 0-based, left to right (the detector's order)
    crop: FaceCrop
    prediction: FacePrediction

    @property
    def caption(self) -> str:
        """"happy 0.87": the label and its probability, as boxes and face lists show it."""
        return f"{self.prediction.label} {float(self.prediction.probabilities[self.prediction.label_index]):.2f}"


@dataclass
class ImageResult:
    image: PIL.Image.Image
    faces: list[FaceResult]
    notices: list[str]  # e.g. "No face found ...", "found 31 faces, kept the 20 largest"

    def largest_face(self) -> FaceResult | None:
        """The face with the largest box (a whole-image face has none and counts as 0); None without faces."""
        return max(self.faces, key=lambda f: 0 if f.crop.box is None else f.crop.box.area, default=None)

    def annotated(self) -> np.ndarray:
        """The photo with a numbered box and caption per detected face (a whole-image face has no box)."""
        from fer_explain.render import annotate_image

        boxed = [f for f in self.faces if f.crop.box is not None]
        return annotate_image(self.image, [f.crop.box for f in boxed], [f.caption for f in boxed])


def default_checkpoint(baseline: bool = False, folder: str | Path = CHECKPOINT_DIR) -> Path:
    """The Bi-LSTM checkpoint in `checkpoints/` (the `*.safetensors` whose name lacks "baseline"), or the baseline."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    matches = [p for p in files if ("baseline" in p.name.lower()) == baseline]
    if not matches:
        kind = "baseline" if baseline else "Bi-LSTM"
        raise UserError(f"no {kind} checkpoint in {folder}: pass --checkpoint FILE (or hf://owner/repo/file) "
                        "or train one (see training/)")
    # several candidates: the shortest name is the canonical one (e.g. resnet50.safetensors before resnet50_seed1...)
    return min(matches, key=lambda p: (len(p.name), p.name))


def analyze_many(predictor, images: Iterable[tuple[Any, Any]], whole_image: bool = False, max_faces: int = 20,
                 batch_size: int = 64, prior_correction: float = 0.0) -> Iterator[tuple[Any, ImageResult]]:
    """(key, image) pairs -> (key, ImageResult) in the same order; faces of consecutive images share predict batches.
    prior_correction: the decision rule's tau (Predictor.predict).

    Results are held back only until their batch is full (or the input ends), so a long video streams; at most
    `batch_size` images wait at once, so frames without faces do not pile up (each holds its decoded image).
    """
    from fer_explain.faces import find_faces, to_tensor

    batch_size = max(1, int(batch_size))
    pending: list[tuple[Any, Any]] = []  # (key, FaceSearch) waiting for predictions
    pending_faces = 0

    def flush():
        nonlocal pending_faces
        crops = [crop for _, search in pending for crop in search.faces]
        predictions = predictor.predict(to_tensor(crops), prior_correction=prior_correction) if crops else []
        done, start = [], 0
        for key, search in pending:
            n = len(search.faces)
            faces = [FaceResult(i, crop, pred)
                     for i, (crop, pred) in enumerate(zip(search.faces, predictions[start:start + n]))]
            done.append((key, ImageResult(search.image, faces, list(search.notices))))
            start += n
        pending.clear()
        pending_faces = 0
        return done

    for key, image in images:
        # find_faces reads paths, bytes, arrays and non-RGB images through image_io.load_image (UserError if bad)
        search = find_faces(image, predictor.preprocessing, whole_image=whole_image, max_faces=max_faces)
        pending.append((key, search))
        pending_faces += len(search.faces)
        # nothing for the model yet (face-less images so far): yield at once rather than hold their images
        if pending_faces == 0 or pending_faces >= batch_size or len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


def analyze_image(predictor, image, whole_image: bool = False, max_faces: int = 20,
                  prior_correction: float = 0.0) -> ImageResult:
    """Detect the faces of one image, crop them with the predictor's preprocessing, ONE batched predict."""
    return next(analyze_many(predictor, [(None, image)], whole_image, max_faces, batch_size=max(1, max_faces),
                             prior_correction=prior_correction))[1]


def _box_list(face: FaceResult) -> list[int] | None:
    box = face.crop.box
    return None if box is None else [int(box.x0), int(box.y0), int(box.x1), int(box.y1)]


def face_record(face: FaceResult, classes=CLASSES) -> dict:
    """JSON-ready: index, box [x0, y0, x1, y1] (None = whole image), detector score, label, score, probabilities."""
    pred, box = face.prediction, face.crop.box
    probs = np.asarray(pred.probabilities, dtype=float)
    return {
        "face": face.index,
        "box": _box_list(face),
        "detector_score": None if box is None else round(float(box.score), 4),
        "label": pred.label,
        "score": round(float(probs[pred.label_index]), 6),
        "probabilities": {c: round(float(p), 6) for c, p in zip(classes, probs)},
    }


def _grid_list(grid) -> list[list[float]]:
    return [[float(f"{v:.6g}") for v in row] for row in np.asarray(grid, dtype=float)]  # 6 significant digits


def explanation_record(face: FaceResult, explanation, classes=CLASSES) -> dict:
    """face_record + the explained class, each method's 7x7 grid (before upsampling; row-major = token order) with
    its meta, and the deletion/insertion faithfulness (plus the random-order reference)."""
    record = face_record(face, classes)
    record["target"] = explanation.target
    record["target_index"] = int(explanation.target_index)
    record["spatial_attention"] = None  # keys always present, so consumers need no special case
    record["token_saliency"] = None
    record["gradcam"] = None
    methods = {}
    for name, item in explanation.maps.items():
        record[name] = _grid_list(item.grid)
        methods[name] = {"signed": bool(item.signed), "meta": _jsonable(item.meta)}
    record["methods"] = methods
    # e.g. spatial_attention of a model trained without eq. (2): None above, the reason here
    record["unavailable"] = dict(getattr(explanation, "unavailable", {}) or {})
    record["faithfulness"] = _jsonable(explanation.faithfulness)
    return record


def _jsonable(value):
    """Numpy/torch scalars and arrays inside meta dicts -> plain Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
