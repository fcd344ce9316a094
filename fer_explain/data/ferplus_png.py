"""The `ferplus` layout: Microsoft's FERPlus folders of PNG faces with per-folder vote files.

    root/FER2013Train/, root/FER2013Valid/, root/FER2013Test/   -> splits train, val, test
        fer0000000.png, ...
        label.csv   no header; one line per image: name, face box "(x, y, w, h)", then 10 vote counts in the
                    order neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF

Hard labels follow the FERPlus majority rule (fer_explain.data.votes): images without an emotion majority
are left out (not an error, not "skipped"). A listed image whose file is missing or unreadable is skipped and
recorded. Optional soft labels are the vote distributions of the kept images.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from fer_explain.data.dataset import FaceDataset
from fer_explain.data.image_files import decode_image_files
from fer_explain.data.votes import LEFT_OUT, VOTE_COLUMNS, majority_labels, soft_labels_from_votes
from fer_explain.errors import UserError

NAME = "ferplus"
SPLIT_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
LABEL_FILE = "label.csv"


def looks_like(root: Path) -> bool:
    return any((root / folder).is_dir() for folder in SPLIT_FOLDERS.values())


def read_label_file(path: Path) -> tuple[list[str], np.ndarray]:
    """(image names, votes int64 (N, 10)). The face box may be quoted or not, so the votes are the last 10 fields."""
    names, votes = [], []
    try:
        with open(path, newline="") as f:
            for line_number, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 1 + len(VOTE_COLUMNS):
                    raise UserError(f"{path}:{line_number}: expected an image name, a face box and "
                                    f"{len(VOTE_COLUMNS)} vote counts, got {len(row)} fields")
                try:
                    counts = [int(v) for v in row[-len(VOTE_COLUMNS):]]
                except ValueError:
                    raise UserError(f"{path}:{line_number}: vote counts must be integers: {','.join(row)}") from None
                if min(counts) < 0:
                    raise UserError(f"{path}:{line_number}: negative vote count")
                names.append(row[0].strip())
                votes.append(counts)
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    return names, np.array(votes, dtype=np.int64).reshape(-1, len(VOTE_COLUMNS))


def load(root: Path, split: str, soft_labels: bool = False, storage_size: int | None = None) -> FaceDataset:
    folder = root / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise UserError(f"no {SPLIT_FOLDERS[split]}/ folder in {root} for the {split!r} split")
    label_path = folder / LABEL_FILE
    if not label_path.is_file():
        raise UserError(f"no {LABEL_FILE} in {folder} (FERPlus vote file)")
    names, votes = read_label_file(label_path)
    if not names:
        raise UserError(f"{label_path} lists no images")
    labels = majority_labels(votes)
    keep = np.flatnonzero(labels != LEFT_OUT)
    if len(keep) == 0:
        raise UserError(f"no image in {label_path} has an emotion majority")
    decoded = decode_image_files([folder / names[i] for i in keep], storage_size)
    if not decoded.kept:
        raise UserError(f"none of the {len(keep)} labelled images in {folder} could be read")
    rows = keep[decoded.kept]
    soft = torch.from_numpy(soft_labels_from_votes(votes[rows], labels[rows])) if soft_labels else None
    return FaceDataset(decoded.images, torch.from_numpy(labels[rows]), split, f"{NAME}:{root}", soft, decoded.skipped)
