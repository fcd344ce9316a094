"""Tiny datasets for the data tests, made on the spot in each layout the loaders read: FER+ as the shared data's npz
archives and as the original FERPlus PNG folders with label.csv, RAF-DB's basic layout, and image files (good,
corrupt, truncated)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

# FER+'s majority-label training counts in CLASSES order, as training.train records them in a checkpoint
# (data.train.class_counts: the prior of the --prior-correction decision rule)
TRAIN_COUNTS = dict(zip(("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
                        (8733, 7284, 3022, 3136, 536, 116, 2098, 120)))
VOTE_NAMES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


def gray(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size), value, dtype=np.uint8)


def rgb(r: int, g: int, b: int, size: int = 8) -> np.ndarray:
    return np.stack([np.full((size, size), v, dtype=np.uint8) for v in (r, g, b)], axis=-1)


def save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")
    return path


def truncated_png(path: Path) -> Path:
    save(path, gray(99, 32))
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data cut: fails only when decoded
    return path


def make_ferplus_npz(root: Path, with_test: bool = False) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for name, n, compressed in (("train_0", 3, True), ("train_1", 2, False), ("val", 2, True)) + \
            ((("test", 2, True),) if with_test else ()):
        votes = np.zeros((n, 10), dtype=int)
        labels = rng.integers(0, 8, n)
        for i, c in enumerate(labels):
            votes[i, [0, 1, 3, 2, 6, 5, 4, 7].index(c)] = 7
            votes[i, 8] = 3
        images = np.stack([gray(10 * len(rows) + 10 * i, 6) for i in range(n)])
        (np.savez_compressed if compressed else np.savez)(root / f"{name}.npz", images=images,
                                                          labels=labels.astype(np.uint8))
        split = name.split("_")[0]
        rows += [[f"{name}.npz", pos, int(labels[pos]), split, *votes[pos]] for pos in range(n)][::-1]  # any row order
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["npz", "pos", "label_id", "split", *[f"votes_{v}" for v in VOTE_NAMES]])
        w.writerows(rows)
    return root


def make_ferplus_png(root: Path) -> Path:
    folder = root / "FER2013Train"
    lines = [
        ("fer0.png", [8, 0, 0, 2, 0, 0, 0, 0, 0, 0], gray(10)),   # neutral
        ("fer1.png", [0, 9, 0, 0, 0, 0, 0, 0, 1, 0], gray(20)),   # happy
        ("fer2.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], gray(30)),  # NF -> left out
        ("fer3.png", [0, 0, 5, 0, 0, 0, 0, 0, 5, 0], gray(40)),   # tie -> left out
        ("fer4.png", [0, 0, 0, 0, 0, 0, 0, 6, 4, 0], gray(50)),   # contempt
        ("fer5.png", [0, 0, 0, 0, 10, 0, 0, 0, 0, 0], None),      # corrupt file
        ("fer6.png", [0, 0, 0, 0, 0, 0, 10, 0, 0, 0], "missing"),
    ]
    folder.mkdir(parents=True)
    with open(folder / "label.csv", "w", newline="") as f:
        for name, votes, image in lines:
            if isinstance(image, np.ndarray):
                save(folder / name, image)
            elif image is None:
                corrupt(folder / name)
            f.write(",".join([name, '"(0, 0, 8, 8)"', *map(str, votes)]) + "\n")
    save(folder / "fer_unlisted.png", gray(0))  # an image without a label line is not part of the split
    return root


def make_rafdb(root: Path, per_class: int = 20) -> Path:
    lines = []
    for k in range(1, 8):
        for i in range(per_class):
            lines.append((f"train_{k}{i:03d}.jpg", k))
        lines.append((f"test_{k}000.jpg", k))
    for name, k in lines:  # the red channel encodes the RAF-DB label, so the mapping can be checked per image
        save(root / "Image/aligned" / name.replace(".jpg", "_aligned.jpg"), rgb(30 * k, 200, 60), quality=95)
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel/list_patition_label.txt").write_text("".join(f"{n} {k}\n" for n, k in lines))
    return root
