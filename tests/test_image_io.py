"""load_image on good and bad files made here, folder expansion, and video frames from a tiny video written here."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fer_explain.errors import UserError
from fer_explain.image_io import is_video, iter_image_files, load_image
from fer_explain.video import iter_video_frames


def _noise(size=(64, 48), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _png_header_only(path, width, height):
    """A PNG whose IHDR claims width x height, with no pixel data: decoding it would be a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_an_error_not_half_an_image(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt.lower()}"
    _noise((200, 200)).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut\..*(corrupt|truncated)"):
        load_image(path)


def test_not_an_image_empty_and_missing(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello, I am text")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match="notes.jpg: not an image"):
        load_image(tmp_path / "notes.jpg")
    with pytest.raises(UserError, match="empty.png: empty file"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no such file"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(UserError, match="empty file"):
        load_image(b"")


def test_too_small_and_too_large(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(UserError, match="dot.png: image too small"):
        load_image(tmp_path / "dot.png")
    _png_header_only(tmp_path / "bomb.png", 10000, 10000)
    with pytest.raises(UserError, match="bomb.png: image too large"):
        load_image(tmp_path / "bomb.png")
    with pytest.raises(UserError, match="too large"):  # beyond PIL's own limit too
        _png_header_only(tmp_path / "huge.png", 30000, 30000)
        load_image((tmp_path / "huge.png").read_bytes())


def test_rgba_composited_on_neutral_background(tmp_path):
    a = np.zeros((32, 32, 4), np.uint8)
    a[:, :16] = (255, 0, 0, 255)  # opaque red left, fully transparent right
    Image.fromarray(a).save(tmp_path / "alpha.png")
    im = load_image(tmp_path / "alpha.png")
    px = np.asarray(im)
    assert im.mode == "RGB" and tuple(px[0, 0]) == (255, 0, 0) and tuple(px[0, 31]) == (128, 128, 128)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    r, g, b = np.asarray(load_image(tmp_path / "cmyk.jpg"), dtype=int)[16, 16]
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32896, 65535, 65535]] * 16, dtype=np.uint16).repeat(4, axis=1)
    Image.fromarray(a).save(tmp_path / "deep.png")
    px = np.asarray(load_image(tmp_path / "deep.png"))
    assert px.dtype == np.uint8 and px.shape == (16, 16, 3)
    assert px[0, 0, 0] == 0 and px[0, 4, 0] == 128 and px[0, 8, 0] == 255
    # the same from an array
    assert np.asarray(load_image(a))[0, 4, 1] == 128


def test_palette_gray_and_animated_gif(tmp_path):
    rgb = _noise()
    rgb.convert("P").save(tmp_path / "pal.png")
    rgb.convert("L").save(tmp_path / "gray.png")
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert load_image(tmp_path / "pal.png").mode == "RGB"
    gray = np.asarray(load_image(tmp_path / "gray.png"))
    assert gray.shape == (48, 64, 3) and (gray[..., 0] == gray[..., 2]).all()
    r, g, b = np.asarray(load_image(tmp_path / "anim.gif"))[5, 5]
    assert r > 200 and g < 50 and b < 50  # the first frame, red


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    a = np.full((20, 40, 3), 255, np.uint8)
    a[:, :20] = 0  # stored wide: black left half
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(a).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    px = np.asarray(load_image(tmp_path / "phone.jpg"))
    assert px.shape == (40, 20, 3)  # upright: tall
    assert px[:15].mean() < 40 and px[25:].mean() > 215  # black left half became the top


def test_other_sources():
    rgb = _noise()
    assert load_image(rgb).size == (64, 48)
    assert load_image(np.asarray(rgb)).size == (64, 48)
    assert load_image(np.asarray(rgb.convert("L"))).mode == "RGB"
    buf = __import__("io").BytesIO()
    rgb.save(buf, "PNG")
    assert np.array_equal(np.asarray(load_image(buf.getvalue())), np.asarray(rgb))
    with pytest.raises(UserError, match="shape"):
        load_image(np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(UserError, match="numbers"):  # not a traceback from numpy's int conversion
        load_image(np.full((32, 32), "a", dtype=object))


def test_unopenable_file_is_a_user_error(tmp_path, monkeypatch):
    _noise().save(tmp_path / "locked.png")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(type(tmp_path), "open", refuse)
    with pytest.raises(UserError, match="locked.png: cannot open.*Permission denied"):
        load_image(tmp_path / "locked.png")


def test_iter_image_files(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("a.jpg", "b/deep/c.PNG", "b/clip.mp4", "b/readme.txt", ".hidden/x.png", "b/.y.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.jpg", "b/clip.mp4", "b/deep/c.PNG"]
    missing = []
    listed = list(iter_image_files([tmp_path / "b" / "readme.txt", tmp_path / "gone.jpg"], on_missing=missing.append))
    assert listed == [tmp_path / "b" / "readme.txt"] and missing == [tmp_path / "gone.jpg"]
    with pytest.raises(UserError, match="gone.jpg"):
        list(iter_image_files([tmp_path / "gone.jpg"]))
    assert is_video("x/clip.MOV") and not is_video("x/photo.jpg")


def test_video_frames(tmp_path):
    import cv2
    path = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(25):
        writer.write(np.full((48, 64, 3), (0, 0, i * 10), np.uint8))  # BGR: red grows with the frame index
    writer.release()
    frames = list(iter_video_frames(path, every_n=10))
    assert [f[0] for f in frames] == [0, 10, 20]
    assert [round(f[1], 3) for f in frames] == [0.0, 1.0, 2.0]
    reds = [np.asarray(f[2])[..., 0].mean() for f in frames]
    assert all(f[2].mode == "RGB" and f[2].size == (64, 48) for f in frames)
    assert abs(reds[1] - 100) < 12 and abs(reds[2] - 200) < 12  # RGB order, the right frames


def test_unreadable_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"definitely not a video" * 100)
    with pytest.raises(UserError, match="broken.mp4"):
        list(iter_video_frames(bad))
    with pytest.raises(UserError, match="no such file"):
        list(iter_video_frames(tmp_path / "absent.mp4"))
