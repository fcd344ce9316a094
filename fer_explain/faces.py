"""Finding faces in a photo and cropping them as the training faces were framed.

Detector: dlib's HOG + linear SVM frontal face detector (`dlib.get_frontal_face_detector()`), whose model is
compiled into the `dlib-bin` wheel, so nothing is downloaded at run time. It was chosen by measurement
(benchmarks/face_detector.py, docs/face_detector.md): all frontal and +-30 degree rotated faces found, ~30 ms for a
640x480 image on one CPU core; it needs faces of about 80 px, so images where nothing is found are searched again at
twice the size (small faces, ~4x the time). Profile faces are mostly missed: the notice says so.

Crops follow FER2013's framing: a square around the box centre, side = max(w, h) * (1 + 2 * crop_margin), padded
by edge replication where it leaves the photo, brought to the training resolution with antialiasing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from fer_explain.config import Preprocessing
from fer_explain.image_io import load_image

DISPLAY_SIZE = 224  # colour crop for overlays: the network's input size, so a 7x7 cell is 32x32 pixels
MAX_WORK_SIDE = 1280  # larger photos are searched downscaled: cost grows with pixels, faces stay >= 80 px
UPSAMPLE_PASSES = (0, 1)  # dlib's "upsample_num_times": 0 first; 1 (2x size, finds ~40 px faces) when 0 found none
MIN_SCORE = 0.0  # dlib SVM margin; detections below are dropped


@dataclass
class FaceBox:
    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height


class FaceDetector:
    """dlib HOG frontal face detector; `detect` may be called from many threads at once (one dlib detector per
    thread, since a dlib detector keeps scratch buffers and is not safe to share)."""

    def __init__(self, min_score: float = MIN_SCORE, max_work_side: int = MAX_WORK_SIDE,
                 upsample_passes: tuple[int, ...] = UPSAMPLE_PASSES):
        import dlib  # fails here, once, if the wheel is missing
        self._dlib = dlib
        self._local = threading.local()
        self.min_score = min_score
        self.max_work_side = max_work_side
        self.upsample_passes = upsample_passes

    def _detector(self):
        det = getattr(self._local, "detector", None)
        if det is None:
            det = self._local.detector = self._dlib.get_frontal_face_detector()
        return det

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in the image, in its pixel coordinates, sorted left to right."""
        gray = image.convert("L")  # HOG on gray finds the same faces as on colour, faster
        scale = min(1.0, self.max_work_side / max(gray.size))
        if scale < 1.0:
            gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.BOX)
        work = np.asarray(gray)
        boxes: list[FaceBox] = []
        for upsample in self.upsample_passes:
            rects, scores, _ = self._detector().run(work, upsample, self.min_score)
            boxes = [_to_box(r, s, scale, image.size) for r, s in zip(rects, scores)]
            if boxes:
                break
        return sorted(boxes, key=_left_to_right)


def _left_to_right(box: FaceBox) -> tuple[int, int]:
    return box.x0, box.y0


def _to_box(rect, score: float, scale: float, size: tuple[int, int]) -> FaceBox:
    w, h = size
    x0, y0 = max(0, round(rect.left() / scale)), max(0, round(rect.top() / scale))
    x1, y1 = min(w, round((rect.right() + 1) / scale)), min(h, round((rect.bottom() + 1) / scale))
    return FaceBox(x0, y0, x1, y1, float(score))


_detector: FaceDetector | None = None
_detector_lock = threading.Lock()


def get_detector() -> FaceDetector:
    """The process-wide detector, made on first use."""
    global _detector
    with _detector_lock:
        if _detector is None:
            _detector = FaceDetector()
        return _detector


@dataclass
class FaceCrop:
    box: FaceBox | None  # None: the whole image (centre square) was used
    model_input: np.ndarray  # uint8 (S,S) gray or (S,S,3); S = pre.source_size or pre.image_size
    display: np.ndarray  # uint8 RGB (224,224,3): the same square in colour, for overlays


@dataclass
class FaceSearch:
    faces: list[FaceCrop]
    notices: list[str] = field(default_factory=list)
    image: Image.Image | None = None


def square_region(box: FaceBox | None, size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the square crop; it may reach outside the image."""
    w, h = size
    if box is None:
        side = min(w, h)
        cx, cy = w / 2, h / 2
    else:
        side = max(box.width, box.height) * (1 + 2 * margin)
        cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    side = max(1, round(side))
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    return x0, y0, x0 + side, y0 + side


def _cut_padded(image: Image.Image, region: tuple[int, int, int, int]) -> np.ndarray:
    """The region of the image as uint8 RGB (H,W,3); parts outside the image repeat its edge pixels."""
    x0, y0, x1, y1 = region
    w, h = image.size
    # clipped to the image, never empty (a region wholly outside would repeat the nearest edge pixel)
    cx0, cy0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
    cx1, cy1 = max(min(x1, w), cx0 + 1), max(min(y1, h), cy0 + 1)
    pad = ((max(0, cy0 - y0), max(0, y1 - cy1)), (max(0, cx0 - x0), max(0, x1 - cx1)), (0, 0))
    # only the face's part is copied and converted, not the whole photo (once per face, on the app's request path)
    inside = np.asarray(image.crop((cx0, cy0, cx1, cy1)).convert("RGB"))
    return np.pad(inside, pad, mode="edge")


def crop_face(image: Image.Image, box: FaceBox | None, pre: Preprocessing) -> FaceCrop:
    """The model's input and a colour display crop for one face (None: the whole image's centre square)."""
    square = Image.fromarray(_cut_padded(image, square_region(box, image.size, pre.crop_margin)))
    size = pre.source_size or pre.image_size
    model_image = square.convert("L") if pre.grayscale else square
    # LANCZOS on a downscale averages over the whole footprint (antialiased), as the 48x48 FER images were made
    model_input = np.asarray(model_image.resize((size, size), Image.Resampling.LANCZOS))
    display = np.asarray(square.resize((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.LANCZOS))
    return FaceCrop(box=box, model_input=np.ascontiguousarray(model_input), display=np.ascontiguousarray(display))


def to_tensor(crops: list[FaceCrop]):
    """uint8 torch tensor (B,C,S,S) of the crops' model inputs, ready for `transforms.eval_transform`."""
    import torch
    arrays = [c.model_input[None] if c.model_input.ndim == 2 else c.model_input.transpose(2, 0, 1) for c in crops]
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, dtype=torch.uint8)


def find_faces(image, pre: Preprocessing, whole_image: bool = False, max_faces: int = 20,
               detector: FaceDetector | None = None) -> FaceSearch:
    """Every face in the image, cropped for the model, left to right; notices say what a person should know.

    `image` is anything `load_image` reads. No face: a notice, and with `whole_image` the centre square as one face.
    More than `max_faces`: the largest are kept."""
    image = load_image(image) if not isinstance(image, Image.Image) or image.mode != "RGB" else image
    boxes = (detector or get_detector()).detect(image)
    notices = []
    if not boxes:
        if whole_image:
            notices.append("No face found: the whole image (its centre square) was used as the face.")
            return FaceSearch([crop_face(image, None, pre)], notices, image)
        notices.append("No face found. Faces should be frontal and at least about 40 pixels wide; "
                       "use the whole-image option for an image that is already a face crop.")
        return FaceSearch([], notices, image)
    if len(boxes) > max_faces:
        notices.append(f"Found {len(boxes)} faces; kept the {max_faces} largest.")
        boxes = sorted(sorted(boxes, key=lambda b: -b.area)[:max_faces], key=_left_to_right)
    return FaceSearch([crop_face(image, b, pre) for b in boxes], notices, image)
