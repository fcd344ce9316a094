"""Reading user images safely: any common format, file, bytes, PIL image or array in; an upright RGB PIL image out.

Refuses what would hurt or mislead: decompression bombs (size read from the header before decoding), truncated
files (never half an image), images too small to hold a face, and anything that is not an image, each with a
one-line `UserError` naming the file. Also finds the images and videos in folders for batch commands.
"""
from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_explain.errors import UserError

MAX_PIXELS = 50_000_000  # 50 megapixels: larger than any camera photo a person would upload, far below a bomb
MIN_SIDE = 16  # a face needs some pixels; FER+ faces are 48x48
NEUTRAL_BACKGROUND = (128, 128, 128)  # transparent pixels become mid-gray, neither black nor white
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".pnm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)  # what broken files raise

ImageSource = str | Path | bytes | Image.Image | np.ndarray


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """An upright RGB image from a path, encoded bytes, a PIL image or a uint8/uint16/float array.

    `name` is how error messages call the source (defaults to the path, or "image")."""
    if isinstance(source, np.ndarray):
        return _finish(_from_array(source, name or "image"), name or "image")
    if isinstance(source, Image.Image):
        label = name or getattr(source, "filename", None) or "image"
        _check_size(source.size, label)
        return _finish(source, label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image"
        if len(source) == 0:
            raise UserError(f"{label}: empty file")
        return _decode(io.BytesIO(bytes(source)), label)
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise UserError(f"{label}: no such file")
        if path.is_dir():
            raise UserError(f"{label}: is a folder, not an image")
        if path.stat().st_size == 0:
            raise UserError(f"{label}: empty file")
        try:
            f = path.open("rb")
        except OSError as e:  # unreadable (permissions, a socket, ...): one line, not a trace
            raise UserError(f"{label}: cannot open ({_one_line(e)})") from None
        with f:
            return _decode(f, label)
    raise UserError(f"{name or 'image'}: cannot read an image from a {type(source).__name__}")


def _decode(stream, label: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # PIL's own bomb limit stays as a second line of defence (its warning is made an error here)
            im = Image.open(stream)  # reads the header only
            _check_size(im.size, label)
            im.seek(0)  # animated GIF/WebP/APNG: the first frame
            im.load()  # decodes now, while the file is open; truncated data raises here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(f"{label}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise UserError(f"{label}: not an image (or a format this program cannot read)") from None
    except UserError:
        raise
    except _READ_ERRORS as e:
        raise UserError(f"{label}: corrupt or truncated image ({_one_line(e)})") from None
    return _finish(im, label)


def _check_size(size: tuple[int, int], label: str) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise UserError(f"{label}: image too large ({w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                        f"{MAX_PIXELS / 1e6:.0f})")
    if min(w, h) < MIN_SIDE:
        raise UserError(f"{label}: image too small ({w}x{h}; at least {MIN_SIDE}x{MIN_SIDE} pixels needed)")


def _finish(im: Image.Image, label: str) -> Image.Image:
    """EXIF orientation applied, then any mode to 8-bit RGB."""
    try:
        im = ImageOps.exif_transpose(im)
        return _to_rgb(im)
    except _READ_ERRORS as e:
        raise UserError(f"{label}: cannot convert the image to RGB ({_one_line(e)})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im))).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, ...


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Integer data above 8 bits is taken as 16-bit (0..65535 -> 0..255); floats as 0..1 unless they exceed it."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float64))
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return np.clip(a * scale, 0, 255).round().astype(np.uint8)
    a = a.astype(np.int64)
    if a.max(initial=0) > 255:  # 16-bit samples, as PNG/TIFF store them
        return np.clip((a + 128) // 257, 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def _from_array(a: np.ndarray, label: str) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise UserError(f"{label}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if not (a.dtype == bool or np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise UserError(f"{label}: expected an array of numbers (integers or floats), got dtype {a.dtype}")
    _check_size((a.shape[1], a.shape[0]), label)
    a = _to_uint8(np.ascontiguousarray(a))
    return Image.fromarray(a)  # uint8 (H,W) / (H,W,3) / (H,W,4) -> L / RGB / RGBA


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def iter_image_files(paths: Iterable[str | Path],
                     on_missing: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """The files named, and the images and videos inside the folders named (recursively, sorted, hidden files
    skipped). A path that does not exist goes to `on_missing` (to be listed as skipped), or raises `UserError`."""
    for p in map(Path, paths):
        if p.is_dir():
            found = (f for f in p.rglob("*") if f.is_file() and (is_image_file(f) or is_video(f)))
            yield from sorted(f for f in found if not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.exists():
            yield p  # named explicitly: load_image will say if it is not an image
        elif on_missing is not None:
            on_missing(p)
        else:
            raise UserError(f"{p}: no such file or folder")
