"""The face detector on a real photo (skimage's astronaut, public domain) and on faceless images; crops; notices."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from fer_explain.config import Preprocessing
from fer_explain.faces import FaceBox, crop_face, find_faces, get_detector, square_region, to_tensor
from fer_explain.transforms import eval_transform

skimage_data = pytest.importorskip("skimage.data")
ASTRONAUT_FACE = (168, 58, 278, 172)  # hand-checked in the 512x512 photo: brows to chin, ear to ear


def _iou(box: FaceBox, ref) -> float:
    ix = max(0, min(box.x1, ref[2]) - max(box.x0, ref[0]))
    iy = max(0, min(box.y1, ref[3]) - max(box.y0, ref[1]))
    inter = ix * iy
    return inter / (box.area + (ref[2] - ref[0]) * (ref[3] - ref[1]) - inter)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


def test_finds_the_astronauts_face(astronaut):
    boxes = get_detector().detect(astronaut)
    assert len(boxes) == 1
    assert _iou(boxes[0], ASTRONAUT_FACE) > 0.45 and boxes[0].score > 0


def test_nothing_on_blank_or_noise():
    rng = np.random.default_rng(0)
    blank = Image.new("RGB", (320, 240), (200, 200, 200))
    noise = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    assert get_detector().detect(blank) == [] and get_detector().detect(noise) == []


def test_detector_is_shared_and_thread_safe(astronaut):
    assert get_detector() is get_detector()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: get_detector().detect(astronaut), range(4)))
    assert all(r == results[0] for r in results) and len(results[0]) == 1


def test_small_image_face_found_by_the_second_pass(astronaut):
    small = astronaut.resize((256, 256), Image.Resampling.LANCZOS)  # face ~55 px: below one-pass HOG's 80 px
    boxes = get_detector().detect(small)
    assert len(boxes) == 1 and _iou(boxes[0], [v / 2 for v in ASTRONAUT_FACE]) > 0.45


@pytest.mark.parametrize("pre, shape", [(Preprocessing(), (48, 48)),
                                        (Preprocessing(grayscale=False, source_size=None), (224, 224, 3))])
def test_crop_shapes_and_tensor(astronaut, pre, shape):
    search = find_faces(astronaut, pre)
    assert search.notices == [] and len(search.faces) == 1
    crop = search.faces[0]
    assert crop.model_input.shape == shape and crop.model_input.dtype == np.uint8
    assert crop.display.shape == (224, 224, 3) and crop.display.dtype == np.uint8
    batch = to_tensor(search.faces * 2)
    channels = 1 if pre.grayscale else 3
    side = pre.source_size or pre.image_size
    assert tuple(batch.shape) == (2, channels, side, side) and str(batch.dtype) == "torch.uint8"
    assert tuple(eval_transform(batch, pre).shape) == (2, 3, 224, 224)


def test_crop_framing_and_edge_padding():
    pre = Preprocessing(crop_margin=0.5, source_size=None, image_size=40, grayscale=False)
    a = np.zeros((100, 100, 3), np.uint8)
    a[:, :50] = (255, 0, 0)  # red left half, blue right half
    a[:, 50:] = (0, 0, 255)
    box = FaceBox(0, 30, 20, 50, 1.0)  # at the left edge: the square leaves the photo there
    assert square_region(box, (100, 100), 0.5) == (-10, 20, 30, 60)
    crop = crop_face(Image.fromarray(a), box, pre)
    assert crop.model_input.shape == (40, 40, 3)
    assert (crop.model_input[:, :8, 0] > 240).all()  # padded by repeating the red edge, not black
    whole = crop_face(Image.fromarray(a[:60]), None, pre)  # centre square of a 100x60 image
    assert whole.box is None and whole.model_input[:, 0, 0].mean() > 240 and whole.model_input[:, -1, 2].mean() > 240


class _FakeDetector:
    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, image):
        return sorted(self.boxes, key=lambda b: b.x0)


def test_find_faces_notices():
    image = Image.new("RGB", (400, 300), (90, 90, 90))
    none = find_faces(image, Preprocessing(), detector=_FakeDetector([]))
    assert none.faces == [] and none.notices[0].startswith("No face found")
    whole = find_faces(image, Preprocessing(), whole_image=True, detector=_FakeDetector([]))
    assert len(whole.faces) == 1 and whole.faces[0].box is None and "No face found" in whole.notices[0]
    sizes = [10, 50, 20, 40, 30]  # box i at x = 70 * i, side sizes[i]
    boxes = [FaceBox(70 * i, 10, 70 * i + s, 10 + s, 1.0) for i, s in enumerate(sizes)]
    many = find_faces(image, Preprocessing(), max_faces=3, detector=_FakeDetector(boxes))
    assert [f.box.width for f in many.faces] == [50, 40, 30]  # the 3 largest, left to right
    assert "Found 5 faces" in many.notices[0] and "3 largest" in many.notices[0]


def test_find_faces_reads_any_source(astronaut, tmp_path):
    astronaut.save(tmp_path / "a.png")
    assert len(find_faces(tmp_path / "a.png", Preprocessing()).faces) == 1
