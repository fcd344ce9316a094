"""The `rafdb` layout: RAF-DB basic emotions.

    root/EmoLabel/list_patition_label.txt   lines "train_00001.jpg 5" / "test_0001.jpg 7" (RAF-DB's own spelling)
    root/Image/aligned/train_00001_aligned.jpg   (100x100 aligned RGB faces)

RAF-DB labels 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral are mapped into CLASSES order;
contempt does not occur. The split is the file-name prefix (train / test).
RAF-DB has no validation split: "val" is a deterministic stratified 10 % of the train list (per class,
round(10 % of its images), drawn with numpy's default_rng seeded by (0, class index)), and "train" is the rest,
so train and val are disjoint. The carve-out is computed on the label file, before decoding, so an unreadable
image never moves other images between train and val.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fer_explain.classes import CLASSES, canonical_class
from fer_explain.data.dataset import FaceDataset
from fer_explain.data.image_files import decode_image_files
from fer_explain.errors import UserError

NAME = "rafdb"
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
IMAGE_FOLDER = Path("Image") / "aligned"
RAFDB_LABELS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # RAF-DB label 1..7
RAFDB_TO_CLASS = {i + 1: CLASSES.index(canonical_class(name)) for i, name in enumerate(RAFDB_LABELS)}
VAL_FRACTION = 0.1
VAL_SEED = 0


def looks_like(root: Path) -> bool:
    return (root / LABEL_FILE).is_file()


def read_label_file(path: Path) -> tuple[list[str], np.ndarray]:
    """(file names, class indices int64) for every line; UserError with the line number on a malformed one."""
    names, labels = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) not in RAFDB_TO_CLASS:
            raise UserError(f"{path}:{line_number}: expected '<image name> <label 1..7>', got {line.strip()!r}")
        if not fields[0].startswith(("train_", "test_")):
            raise UserError(f"{path}:{line_number}: image name {fields[0]!r} starts with neither train_ nor test_")
        names.append(fields[0])
        labels.append(RAFDB_TO_CLASS[int(fields[1])])
    return names, np.array(labels, dtype=np.int64)


def validation_mask(labels: np.ndarray, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> np.ndarray:
    """bool mask over the train list: which images form the stratified validation carve-out."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, int(c)])  # per class, so one class's count never reshuffles another
        chosen = rng.permutation(members)[: int(round(fraction * len(members)))]
        mask[chosen] = True
    return mask


def aligned_path(root: Path, name: str) -> Path:
    stem = Path(name).stem
    return root / IMAGE_FOLDER / f"{stem}_aligned.jpg"


def load(root: Path, split: str, soft_labels: bool = False, storage_size: int | None = None) -> FaceDataset:
    if soft_labels:
        raise UserError("RAF-DB has one label per image: soft labels need the FERPlus vote counts")
    names, labels = read_label_file(root / LABEL_FILE)
    if not (root / IMAGE_FOLDER).is_dir():
        raise UserError(f"no {IMAGE_FOLDER}/ folder in {root} (RAF-DB aligned faces)")
    in_train = np.array([n.startswith("train_") for n in names], dtype=bool)
    if split == "test":
        rows = np.flatnonzero(~in_train)
    else:
        train_rows = np.flatnonzero(in_train)
        val = validation_mask(labels[train_rows])
        rows = train_rows[val] if split == "val" else train_rows[~val]
    if len(rows) == 0:
        raise UserError(f"{root / LABEL_FILE} lists no images for the {split!r} split")
    decoded = decode_image_files([aligned_path(root, names[i]) for i in rows], storage_size)
    if not decoded.kept:
        raise UserError(f"none of the {len(rows)} {split} images in {root / IMAGE_FOLDER} could be read")
    source = f"{NAME}:{root}" + (" (val = stratified 10% of train, seed 0)" if split != "test" else "")
    return FaceDataset(decoded.images, torch.from_numpy(labels[rows[decoded.kept]]), split, source,
                       None, decoded.skipped)
