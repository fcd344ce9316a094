"""Torchvision backbones cut at their last stride-32 stage, so a 224x224 face gives a C x 7 x 7 feature map.

`resnet50` is the paper's; `mobilenet_v2` and `resnet18` are smaller (quick runs, tests). Weights are random
unless a torchvision-layout state dict is given as a file (safetensors, or a torchvision .pth): nothing is
downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models

from fer_explain.errors import UserError

# name -> (torchvision constructor, feature channels, head parameter prefix dropped when cutting)
BACKBONES = {
    "resnet50": (models.resnet50, 2048, "fc."),
    "resnet18": (models.resnet18, 512, "fc."),
    "mobilenet_v2": (models.mobilenet_v2, 1280, "classifier."),
}


def _cut(name: str, net: nn.Module) -> nn.Module:
    if name.startswith("resnet"):
        return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return net.features


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torchvision .pth (loaded with weights_only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"backbone weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: say which
        raise UserError(f"cannot read backbone weights {path}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    return state


def create_backbone(name: str, weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """The cut backbone and its number of output channels; `weights` is a torchvision-layout file or None."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    ctor, channels, head_prefix = BACKBONES[name]
    net = ctor(weights=None)
    if weights is not None:
        state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(weights).items()
                 if not k.startswith(head_prefix)}
        expected = {k for k in net.state_dict() if not k.startswith(head_prefix)}
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise UserError(f"{weights} is not a torchvision {name} state dict "
                            f"({len(missing)} keys missing, {len(unexpected)} unexpected, e.g. "
                            f"{sorted(missing or unexpected)[:3]})")
        try:
            net.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise UserError(f"{weights} does not fit {name}: "
                            f"{str(e).splitlines()[1] if chr(10) in str(e) else e}") from None
    return _cut(name, net), channels
