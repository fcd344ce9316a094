"""The app's Gradio components that need more than their constructor: a photo box that lets
`fer_explain.image_io` judge every upload, and the JPEG picture boxes the explanation panels are drawn in.
(UI only: `fer_explain.predictor` and the views never import this module, or Gradio.)"""
from __future__ import annotations

import gradio as gr


def tolerant(image: gr.Image) -> gr.Image:
    """Hand an upload on as its file path even when Pillow cannot open it, so that
    `fer_explain.image_io.load_image` (header size check against decompression bombs, EXIF orientation, mode
    conversion) judges every file and a bad one becomes a one-line notice instead of a stack trace.
    (Patched on the instance: a gr.Image subclass would make gradio write a .pyi stub next to its module.)"""
    original = image.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:
            return None if payload is None or payload.path is None else str(payload.path)

    image.preprocess = preprocess
    return image


def image_box(label, height=260, show_label=True, elem_id=None):
    # JPEG: PNG encoding of the ~13 images of one request cost ~0.6 s of the 1.5 s budget on 2 CPU cores
    return gr.Image(label=label, type="numpy", interactive=False, height=height, format="jpeg", show_label=show_label,
                    elem_id=elem_id)


def grid_box(label, height=260):
    """A 7x7 grid picture: it carries its own title, and the label badge would hide its first columns."""
    return image_box(label, height, show_label=False)
