"""Where the model runs, and how it is made ready for inference there.

`prepare_for_inference` folds each BatchNorm into the convolution before it (torch.fx `fuse`) and uses channels_last:
the same function of the input up to float rounding, ~1.2x faster on CPU (resnet50, batch 32: 67 -> 57 ms per image
on 2 cores). It is for frozen inference models only: the training loop evaluates its live model unfused.
"""
from __future__ import annotations

import torch
from torch import nn

from fer_explain.errors import UserError


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """"auto": CUDA when available, else CPU; "cpu" and "cuda[:N]" force one (CUDA missing -> UserError)."""
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; expected auto, cpu or cuda") from None
    if chosen.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device!r}; expected auto, cpu or cuda")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but CUDA is not available here; use --device cpu or auto")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise UserError(f"device {chosen} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return chosen


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode on `device`, BatchNorm folded into the backbone's convolutions, channels_last. In place."""
    from torch.fx.experimental.optimization import fuse

    model = model.to(device).eval()
    if any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules()):
        model.backbone = fuse(model.backbone)
    return model.to(memory_format=torch.channels_last)
