"""The app's Live tab: one webcam frame -> the emotions of its largest face and that face's spatial attention
(eq. 2), fast enough for a few frames a second on a CPU. Like app_views, plain Python: gradio is never imported."""
from __future__ import annotations

import numpy as np

from fer_explain.app_views import LoadedModels, require_models
from fer_explain.decision import check_prior_correction


def live_view(models: LoadedModels, frame, max_side: int = 480,
              prior_correction: float = 0.0) -> tuple[str, np.ndarray | None]:
    """One webcam frame -> (label line, small spatial-attention overlay of the largest face). Prediction only (no
    gradients), on a frame scaled down to `max_side`, so a CPU keeps up a few times a second."""
    from PIL import Image

    from fer_explain.image_io import load_image
    from fer_explain.pipeline import analyze_image
    from fer_explain.render import overlay_heatmap

    require_models(models)
    if frame is None:
        return "waiting for the webcam…", None
    image = load_image(frame)
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    result = analyze_image(models.main, image, max_faces=5, prior_correction=check_prior_correction(prior_correction))
    if not result.faces:
        return "no face in view", None
    face = result.largest_face()
    pred = face.prediction
    top = np.argsort(-np.asarray(pred.probabilities))[:3]
    label = " · ".join(f"{'**' if i == top[0] else ''}{models.main.classes[i]} {pred.probabilities[i]:.0%}"
                       f"{'**' if i == top[0] else ''}" for i in top)
    overlay = None
    if pred.spatial_attention is not None:
        overlay = overlay_heatmap(face.crop.display, np.asarray(pred.spatial_attention), signed=False)
    return f"{len(result.faces)} face(s) · {label}", overlay
