"""Dual attention of the paper: channel attention, eq. (1), and spatial attention, eq. (2) (CBAM-style).

CA(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))         (one MLP shared by both pooled vectors)
SA(F) = sigmoid(Conv7x7([mean_c(F); max_c(F)]))
Each module returns F multiplied by its gate; `gate()` gives the weights alone, which the explanations show.
"""
from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def create_attention(kind: str, channels: int, reduction: int = 16, kernel_size: int = 7) -> nn.Module | None:
    """Ablation switch: "channel", "spatial", or "none" (no module)."""
    kind = kind.lower()
    if kind == "none":
        return None
    if kind == "channel":
        return ChannelAttention(channels, reduction)
    if kind == "spatial":
        return SpatialAttention(kernel_size)
    raise ValueError(f"unknown attention {kind!r}; expected 'channel', 'spatial' or 'none'")
