"""The training run's data: both splits loaded once, the optional seeded subset, and everything moved to the device.

Returns what the epoch loop indexes directly (uint8 images, labels, vote distributions on the device), the
validation `FaceDataset` (its images on the device too), the `Preprocessing` the checkpoint will carry, and the
data description stored in it (layout, folder, fingerprints, class counts).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from fer_explain.config import Preprocessing
from fer_explain.data import detect_format, load_split
from fer_explain.data.dataset import FaceDataset
from fer_explain.errors import UserError


def describe(dataset: FaceDataset) -> dict:
    return {"n": len(dataset), "fingerprint": dataset.fingerprint(), "source": dataset.source,
            "class_counts": dict(zip(dataset.classes, dataset.class_counts)),
            "missing_classes": dataset.missing_classes, "skipped_files": len(dataset.skipped)}


def _note_missing(dataset: FaceDataset, main: bool) -> None:
    if main and dataset.missing_classes:
        print(f"note: the {dataset.split} split has no {', '.join(dataset.missing_classes)} images; "
              f"{'those classes get loss weight 0 and ' if dataset.split == 'train' else ''}"
              "the metrics average over the present classes only", file=sys.stderr)


def load_data(args, recipe: dict, dist_) -> tuple[dict, FaceDataset, Preprocessing, dict]:
    if args.limit_train is not None and args.limit_train < 1:
        raise UserError(f"--limit-train must be at least 1, not {args.limit_train}")
    root = Path(args.data)
    data_format = recipe["data_format"]
    resolved_format = detect_format(root) if data_format == "auto" else data_format
    train = load_split(root, "train", data_format, soft_labels=recipe["soft_labels"])
    val = load_split(root, "val", data_format)
    if recipe["soft_labels"] and train.soft_labels is None:
        raise UserError(f"the recipe asks for soft_labels but the {resolved_format} data in {root} has no vote counts")
    if train.images.shape[1:] != val.images.shape[1:]:
        raise UserError(f"train and val images differ in shape ({tuple(train.images.shape[1:])} vs "
                        f"{tuple(val.images.shape[1:])}); load them with the same storage size")
    full_description = describe(train)
    if args.limit_train and args.limit_train < len(train):
        subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: args.limit_train]
        train = train.subset(subset)
    for split in (train, val):
        _note_missing(split, dist_.is_main)
    # the folder as given: resolved, it would publish the training machine's directories in every shipped file
    info = {"format": resolved_format, "root": str(root), "train": describe(train), "val": describe(val),
            "limit_train": args.limit_train}
    if len(train) < full_description["n"]:
        info["train_full"] = full_description
    device = dist_.device
    data = {"images": train.images.to(device), "labels": train.labels.to(device),
            "soft_labels": None if train.soft_labels is None else train.soft_labels.to(device),
            "class_counts": train.class_counts}
    val = FaceDataset(val.images.to(device), val.labels.to(device), val.split, val.source, None, val.skipped,
                      val.classes)
    preprocessing = Preprocessing(grayscale=train.grayscale, source_size=int(train.images.shape[-1]))
    return data, val, preprocessing, info
