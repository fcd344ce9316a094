"""Reading every n-th frame of a video file with OpenCV, as RGB PIL images with their time stamps."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from fer_explain.errors import UserError

FALLBACK_FPS = 25.0  # when the container does not say its frame rate


def iter_video_frames(path: str | Path, every_n: int = 10) -> Iterator[tuple[int, float, Image.Image]]:
    """(frame_index, time_s, RGB frame) for frames 0, every_n, 2*every_n, ...

    Raises `UserError` when the file cannot be opened as a video or holds no readable frame."""
    import cv2

    if every_n < 1:
        raise UserError(f"every_n must be at least 1, got {every_n}")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UserError(f"{path}: cannot open as a video")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and fps > 0 else FALLBACK_FPS
        index = read = 0
        # grab() skips decoding into an image; retrieve() only for the frames we keep
        while capture.grab():
            if index % every_n == 0:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    read += 1
                    yield index, index / fps, Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if read == 0:
            raise UserError(f"{path}: no readable video frame")
    finally:
        capture.release()
