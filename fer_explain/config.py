"""The model's configuration (one dataclass, stored in every checkpoint) and the input preprocessing it was trained
with.

Inference rebuilds the network from `ModelConfig` alone, as nanoGPT does with `GPTConfig`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fer_explain.classes import CLASSES

VARIANTS = ("full", "baseline")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    variant: str = "full"  # "full": Bi-LSTM over the 49 tokens; "baseline": global average pooling instead
    channel_attention: str = "channel"  # eq. (1), or "none" for the ablation
    spatial_attention: str = "spatial"  # eq. (2), or "none" for the ablation
    reduction: int = 16  # channel-attention MLP reduction ratio
    spatial_kernel: int = 7
    lstm_hidden: int = 256
    lstm_layers: int = 2
    lstm_dropout: float = 0.5
    head_hidden: int = 512
    head_dropout: float = 0.5
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self):
        self.classes = tuple(self.classes)
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def display_name(self) -> str:
        """What the app, the CLI and the result tables call the model, e.g. "mobilenet_v2 Bi-LSTM"."""
        kind = "Bi-LSTM" if self.variant == "full" else "baseline"
        ablated = [n for n, v in (("channel", self.channel_attention), ("spatial", self.spatial_attention))
                   if v == "none"]
        return f"{self.backbone} {kind}" + (f" (no {' / '.join(ablated)} attention)" if ablated else "")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class Preprocessing:
    """How a face crop becomes the network's input; recorded in the checkpoint so inference matches training."""

    image_size: int = 224  # network input; 224 gives the 7x7 map
    source_size: int | None = 48  # faces are first brought to the training images' resolution (FER+ is 48x48)
    grayscale: bool = True  # trained on gray faces: colour photos are converted to gray first
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_margin: float = 0.1  # face box enlarged by this per side: FER2013-like framing (docs/face_detector.md)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)
