"""Batched image transforms on uint8 tensors, on whatever device the images live (the GPU during training).

Training augmentation follows the paper: random rotation within +-15 degrees, horizontal flip, resize to 224;
rotation, flip and resize are one affine resampling per batch, so the GPU never waits for a CPU pipeline.
Evaluation and inference resize only. Gray images become 3 channels; normalisation comes from `Preprocessing`.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from fer_explain.config import Preprocessing


def _as_float3(images: torch.Tensor) -> torch.Tensor:
    if images.dim() == 3:
        images = images.unsqueeze(1)
    x = images.float().div_(255.0)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(1,3,1,1) mean and std, made once per device: building them from Python floats per batch is a host-to-device
    copy that synchronises the CUDA stream, i.e. the CPU would wait for the previous training step every batch.
    Made outside inference mode so that a cached pair also serves inputs that need gradients."""
    with torch.inference_mode(False):
        return (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))


def _normalize(x: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    mean, std = _channel_stats(tuple(pre.mean), tuple(pre.std), x.device)
    return (x - mean) / std


def eval_transform(images: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """uint8 (B,H,W) or (B,C,H,W) -> normalised float (B,3,S,S)."""
    x = _as_float3(images)
    if x.shape[-2:] != (pre.image_size, pre.image_size):
        x = F.interpolate(x, size=(pre.image_size, pre.image_size), mode="bilinear", align_corners=False)
    return _normalize(x, pre)


def train_transform(images: torch.Tensor, pre: Preprocessing, max_degrees: float = 15.0, flip: bool = True,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation (+-max_degrees, black corners as torchvision's RandomRotation), horizontal flip, resize."""
    x = _as_float3(images)
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator, device=x.device) * 2 - 1) * math.radians(max_degrees)
    sign = torch.ones(b, device=x.device)
    if flip:
        sign = torch.where(torch.rand(b, generator=generator, device=x.device) < 0.5, -sign, sign)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sign, -sin, torch.zeros_like(cos)], 1),
                         torch.stack([sin * sign, cos, torch.zeros_like(cos)], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, pre.image_size, pre.image_size], align_corners=False)
    return _normalize(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), pre)
