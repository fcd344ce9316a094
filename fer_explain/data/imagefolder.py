"""The `imagefolder` layout: one folder per class, with or without split folders.

    root/train/<class>/..., root/val/<class>/..., root/test/<class>/...   (split folders; "valid",
                                                                           "validation" also name val)
    root/<class>/...                                                      (no split folders: every split
                                                                           name returns the whole folder)

Class folder names are matched case-insensitively through `canonical_class` (happiness, Angry, sadness, ...);
several folders naming one class are merged. Images are found recursively inside a class folder by extension.
Folders starting with "." or "_" (.ipynb_checkpoints, __MACOSX) are ignored.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fer_explain.classes import CLASSES, SYNONYMS, canonical_class
from fer_explain.data.dataset import FaceDataset
from fer_explain.data.image_files import decode_image_files, find_image_files
from fer_explain.errors import UserError

NAME = "imagefolder"
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _split_folder(root: Path, split: str) -> Path | None:
    for p in _subfolders(root):
        if p.name.lower() in SPLIT_NAMES[split]:
            return p
    return None


def has_split_folders(root: Path) -> bool:
    return any(_split_folder(root, s) is not None for s in SPLIT_NAMES)


def looks_like(root: Path) -> bool:
    if has_split_folders(root):
        return True
    folders = _subfolders(root)
    return bool(folders) and all(canonical_class(p.name) is not None for p in folders)


def class_folders(folder: Path) -> list[tuple[Path, int]]:
    """(class folder, class index) for every subfolder, in CLASSES order; UserError naming a folder that is no
    known class."""
    found = []
    for p in _subfolders(folder):
        name = canonical_class(p.name)
        if name is None:
            raise UserError(f"folder {p.name!r} in {folder} is not a class name; accepted (any case): "
                            f"{', '.join(sorted(SYNONYMS))}")
        found.append((p, CLASSES.index(name)))
    found.sort(key=lambda item: (item[1], item[0].name.lower()))  # CLASSES order, whatever the folders' spelling
    if not found:
        raise UserError(f"no class folders in {folder} (expected one folder per emotion, e.g. {', '.join(CLASSES)})")
    return found


def load(root: Path, split: str, soft_labels: bool = False, storage_size: int | None = None) -> FaceDataset:
    if soft_labels:
        raise UserError("an image folder has one label per image: soft labels need the FERPlus vote counts")
    if has_split_folders(root):
        folder = _split_folder(root, split)
        if folder is None:
            present = [p.name for p in _subfolders(root)]
            raise UserError(f"no {split}/ folder in {root} (it has: {', '.join(present)})")
        source = f"{NAME}:{folder}"
    else:
        folder = root
        source = f"{NAME}:{root} (no split folders: the whole folder for every split)"
    paths, labels = [], []
    for class_folder, index in class_folders(folder):
        files = find_image_files(class_folder)
        paths += files
        labels += [index] * len(files)
    if not paths:
        raise UserError(f"no image files in the class folders of {folder}")
    decoded = decode_image_files(paths, storage_size)
    if not decoded.kept:
        raise UserError(f"none of the {len(paths)} image files in {folder} could be read")
    kept_labels = torch.tensor([labels[i] for i in decoded.kept], dtype=torch.int64)
    return FaceDataset(decoded.images, kept_labels, split, source, None, decoded.skipped)
