"""Face datasets: every on-disk layout loads into one `FaceDataset` (uint8 faces + class indices in CLASSES order).

    load_split(root, "train")                  # layout detected from the folder
    load_split(root, "val", "ferplus", soft_labels=True)

Layouts (DATA_FORMATS): ferplus-npz (shared/data/ferplus archives), ferplus (Microsoft's FERPlus PNG folders
with vote files), rafdb (RAF-DB basic), imagefolder (one folder per class, optionally under train/val/test).
"""
from __future__ import annotations

import sys
from pathlib import Path

from fer_explain.data import ferplus_npz, ferplus_png, imagefolder, rafdb
from fer_explain.data.dataset import FaceDataset
from fer_explain.errors import UserError

# detection order matters: the specific layouts first, the generic image folder last
LAYOUTS = {"ferplus-npz": ferplus_npz, "ferplus": ferplus_png, "rafdb": rafdb, "imagefolder": imagefolder}
DATA_FORMATS = tuple(LAYOUTS)
SPLITS = ("train", "val", "test")

__all__ = ["DATA_FORMATS", "SPLITS", "FaceDataset", "detect_format", "load_split"]


def _folder(root) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise UserError(f"data folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"{path} is not a folder")
    try:
        next(path.iterdir(), None)
    except OSError as error:
        raise UserError(f"cannot read data folder {path}: {error.strerror or error}") from None
    return path


def detect_format(root) -> str:
    """The layout of `root`, one of DATA_FORMATS; UserError naming what was looked for when nothing matches."""
    path = _folder(root)
    for name, layout in LAYOUTS.items():
        if layout.looks_like(path):
            return name
    raise UserError(
        f"cannot tell the data layout of {path}: looked for train_*.npz/val.npz/test.npz (ferplus-npz), "
        f"FER2013Train/FER2013Valid/FER2013Test folders (ferplus), EmoLabel/list_patition_label.txt (rafdb), "
        f"and train/val/test or emotion-named class folders (imagefolder)")


def load_split(root, split: str, data_format: str = "auto", soft_labels: bool = False,
               storage_size: int | None = None) -> FaceDataset:
    """One split ("train", "val" or "test") of the data set in `root`.

    Gray data stays one channel; images keep their native size when all have one size, else they are resized
    to `storage_size` (default 112). Unreadable images are skipped, listed in `.skipped` and counted on stderr.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if data_format != "auto" and data_format not in LAYOUTS:
        raise UserError(f"unknown data format {data_format!r}; expected auto or one of {', '.join(DATA_FORMATS)}")
    if storage_size is not None and storage_size < 1:
        raise UserError(f"storage size must be a positive number of pixels, got {storage_size}")
    path = _folder(root)
    name = detect_format(path) if data_format == "auto" else data_format
    dataset = LAYOUTS[name].load(path, split, soft_labels=soft_labels, storage_size=storage_size)
    if dataset.skipped:
        shown = "; ".join(f"{f} ({r})" for f, r in dataset.skipped[:5])
        more = f" and {len(dataset.skipped) - 5} more" if len(dataset.skipped) > 5 else ""
        print(f"warning: skipped {len(dataset.skipped)} unreadable image(s) in {name} {split} at {path}: "
              f"{shown}{more}", file=sys.stderr)
    return dataset
