"""The one in-memory dataset type every layout loads into: uint8 faces, class indices in CLASSES order,
optional soft labels, and what was skipped on the way."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from fer_explain.classes import CLASSES


@dataclass
class FaceDataset:
    images: torch.Tensor  # uint8 (N, C, H, W), C = 1 (gray) or 3 (RGB), one size for all images
    labels: torch.Tensor  # int64 (N,), indices into CLASSES
    split: str
    source: str  # layout name and folder, for messages and checkpoints
    soft_labels: torch.Tensor | None = None  # float32 (N, 8) vote distributions, rows sum to 1
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of unreadable images
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def grayscale(self) -> bool:
        return self.images.shape[1] == 1

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    @property
    def present_classes(self) -> list[int]:
        return [i for i, n in enumerate(self.class_counts) if n > 0]

    @property
    def missing_classes(self) -> list[str]:
        return [self.classes[i] for i, n in enumerate(self.class_counts) if n == 0]

    def fingerprint(self) -> str:
        """sha256 of images and labels: identifies the exact data a checkpoint was trained or measured on."""
        h = hashlib.sha256()
        h.update(self.images.contiguous().cpu().numpy().tobytes())
        h.update(self.labels.cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def subset(self, index: torch.Tensor) -> "FaceDataset":
        return FaceDataset(self.images[index], self.labels[index], self.split, self.source,
                           None if self.soft_labels is None else self.soft_labels[index], list(self.skipped),
                           self.classes)
