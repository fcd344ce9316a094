"""Decode a list of image files into one uint8 (N, C, H, W) tensor, skipping and recording unreadable files.

Storage rules shared by every image-file layout:
- channels: C = 1 when every image is gray (a gray mode, or RGB with R = G = B), else C = 3 (gray ones repeated);
- size: the native size when all images have the same size, else every image is resized to
  `storage_size` x `storage_size` (antialiased) so that the dataset is one tensor.
Decoding runs in a thread pool: Pillow releases the GIL while it decodes, so JPEG-heavy folders go faster.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")
DEFAULT_STORAGE_SIZE = 112
WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # 16/32-bit gray, rescaled to 8 bits


@dataclass
class DecodedImages:
    images: torch.Tensor  # uint8 (N, C, H, W)
    kept: list[int]  # positions in the input list of the images that decoded, in input order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def find_image_files(folder: Path) -> list[Path]:
    """Image files anywhere below `folder` (recursive), by extension (case-insensitive), sorted for determinism."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."))


def _workers() -> int:
    return min(16, 2 * (os.cpu_count() or 1))


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as im:  # reads the header only
        return im.size


def _decode(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """(H, W) for gray or (H, W, 3) for colour, resized to `size` (W, H) when given."""
    from PIL import Image
    with Image.open(path) as im:
        im.load()  # a truncated or corrupt file fails here, not later
        if im.mode in WIDE_GRAY_MODES:
            im = Image.fromarray(_to_uint8(np.asarray(im)))
        elif im.mode in ("1", "L", "LA"):
            im = im.convert("L")
        else:
            im = im.convert("RGB")  # palette, RGBA, CMYK, YCbCr, ...
        if size is not None and im.size != size:
            # Pillow's resampling filters widen their support when shrinking, i.e. they antialias
            im = im.resize(size, Image.Resampling.BILINEAR)
        array = np.asarray(im, dtype=np.uint8)
    if array.ndim == 3 and (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
        array = array[..., 0]  # colour file holding a gray picture
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """16-bit / float gray images scaled to 0..255 by their own range."""
    array = array.astype(np.float64)
    low, high = array.min(), array.max()
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((array - low) * scale).astype(np.uint8)


def decode_image_files(paths: Sequence[Path], storage_size: int | None = None) -> DecodedImages:
    """Decode `paths`; files that cannot be read are left out and listed in `skipped` with the reason."""
    paths = [Path(p) for p in paths]
    skipped: dict[int, str] = {}
    with ThreadPoolExecutor(_workers()) as pool:
        sizes: dict[int, tuple[int, int]] = {}
        for i, result in enumerate(pool.map(_try, [_header_size] * len(paths), paths)):
            if isinstance(result, Exception):
                skipped[i] = _reason(result)
            else:
                sizes[i] = result
        native = set(sizes.values())
        target = None if len(native) <= 1 else (storage_size or DEFAULT_STORAGE_SIZE,) * 2
        todo = sorted(sizes)
        arrays: dict[int, np.ndarray] = {}
        for i, result in zip(todo, pool.map(_try, [_decode] * len(todo), [paths[i] for i in todo],
                                            [target] * len(todo))):
            if isinstance(result, Exception):
                skipped[i] = _reason(result)
            else:
                arrays[i] = result
    kept = sorted(arrays)
    skipped_list = [(str(paths[i]), skipped[i]) for i in sorted(skipped)]
    if not kept:
        return DecodedImages(torch.empty((0, 1, 0, 0), dtype=torch.uint8), [], skipped_list)
    gray = all(arrays[i].ndim == 2 for i in kept)
    stacked = np.stack([_channels_first(arrays[i], gray) for i in kept])
    return DecodedImages(torch.from_numpy(stacked), kept, skipped_list)


def _channels_first(array: np.ndarray, gray: bool) -> np.ndarray:
    if gray:
        return array[None]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return array.transpose(2, 0, 1)


def _try(function, *args):
    """Run one decoding step; an exception is returned (not raised) so one bad file never stops the batch."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable file"
        return error
