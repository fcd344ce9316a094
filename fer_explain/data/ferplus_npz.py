"""The `ferplus-npz` layout: FER+ packed as numpy archives (the layout of shared/data/ferplus, see its README).

    root/train_0.npz, train_1.npz, ...   (all train_*.npz, or one train.npz) -> split "train"
    root/val.npz, root/test.npz           (a copy may lack test.npz: an error only when "test" is asked for)
    root/labels.csv                       (only for soft labels: npz, pos and the 10 raw FERPlus vote columns)

Each archive holds `images` uint8 (N, 48, 48) gray and `labels` uint8 (N,) class indices in CLASSES order
(already the FERPlus majority labels). Compressed (np.savez_compressed) and uncompressed archives both load.
Everything is vectorised: the full train split loads in about a second.
"""
from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from fer_explain.classes import CLASSES
from fer_explain.data.dataset import FaceDataset
from fer_explain.data.votes import VOTE_COLUMNS, soft_labels_from_votes
from fer_explain.errors import UserError

NAME = "ferplus-npz"
LABELS_FILE = "labels.csv"


def split_files(root: Path, split: str) -> list[Path]:
    """The archives of one split, train parts in numeric order (train_2 before train_10)."""
    if split == "train":
        parts = [p for p in root.glob("train_*.npz") if re.fullmatch(r"train_\d+\.npz", p.name)]
        parts.sort(key=lambda p: int(p.stem.split("_")[1]))
        single = root / "train.npz"
        return ([single] if single.is_file() else []) + parts
    path = root / f"{split}.npz"
    return [path] if path.is_file() else []


def looks_like(root: Path) -> bool:
    return any(split_files(root, s) for s in ("train", "val", "test"))


def _read_archive(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as error:  # TypeError: an .npy
        raise UserError(f"cannot read {path} as a FER+ archive with 'images' and 'labels': {error}") from None
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype != np.uint8:
        raise UserError(f"{path}: 'images' must be uint8 (N, H, W) or (N, C, H, W), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise UserError(f"{path}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise UserError(f"{path}: labels must be class indices 0..{len(CLASSES) - 1}, found {int(labels.max())}")
    return images, labels.astype(np.int64)


def _read_votes(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(npz name per row, position in that npz per row, votes (rows, 10)) from labels.csv."""
    path = root / LABELS_FILE
    if not path.is_file():
        raise UserError(f"soft labels need {path} (the FERPlus vote counts), which is missing")
    vote_names = [f"votes_{name}" for name in VOTE_COLUMNS]
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            columns = [header.index(name) for name in ["npz", "pos", *vote_names]]
            rows = [[row[c] for c in columns] for row in reader if row]
        table = np.array(rows, dtype=object) if rows else np.empty((0, len(columns)), dtype=object)
        return table[:, 0].astype(str), table[:, 1].astype(np.int64), table[:, 2:].astype(np.int64)
    except (StopIteration, ValueError, IndexError) as error:
        raise UserError(f"{path}: expected columns npz, pos and {', '.join(vote_names)} with integer values "
                        f"({error})") from None


def _votes_for(archive: Path, n: int, npz_names: np.ndarray, positions: np.ndarray, votes: np.ndarray) -> np.ndarray:
    rows = npz_names == archive.name
    pos = positions[rows]
    if len(pos) != n or (n and (pos.min() < 0 or pos.max() >= n or np.bincount(pos, minlength=n).max() != 1)):
        raise UserError(f"{LABELS_FILE} does not list every image of {archive.name} exactly once "
                        f"({len(pos)} rows for {n} images)")
    out = np.empty((n, votes.shape[1]), dtype=np.int64)
    out[pos] = votes[rows]
    return out


def load(root: Path, split: str, soft_labels: bool = False, storage_size: int | None = None) -> FaceDataset:
    """`storage_size` is unused: the archives hold one native size already."""
    files = split_files(root, split)
    if not files:
        present = sorted(p.name for p in root.glob("*.npz"))
        wanted = "train_*.npz" if split == "train" else f"{split}.npz"
        raise UserError(f"no {wanted} in {root} for the {split!r} split "
                        f"(archives there: {', '.join(present) or 'none'})")
    parts = [_read_archive(p) for p in files]
    sizes = {part[0].shape[1:] for part in parts}
    if len(sizes) > 1:
        raise UserError(f"the {split} archives in {root} hold images of different shapes: {sorted(sizes)}")
    images = np.concatenate([part[0] for part in parts])
    labels = np.concatenate([part[1] for part in parts])
    if len(images) == 0:
        raise UserError(f"the {split} archives in {root} hold no images")
    soft = None
    if soft_labels:
        table = _read_votes(root)
        votes = np.concatenate([_votes_for(p, len(part[0]), *table) for p, part in zip(files, parts)])
        soft = torch.from_numpy(soft_labels_from_votes(votes, fallback_labels=labels))
    return FaceDataset(torch.from_numpy(images), torch.from_numpy(labels), split, f"{NAME}:{root}", soft)
