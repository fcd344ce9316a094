"""The one output type and the one small base that every explanation method shares (pytorch-grad-cam's BaseCAM shape).

Every explainer starts from the attended C x 7 x 7 map A of the paper's network (after channel attention, eq. 1,
and spatial attention, eq. 2), never from the image: the backbone has already run once in `Predictor.predict`,
and the Bi-LSTM reads A as 49 row-major tokens, so a 7x7 grid in row-major order is exactly one value per token.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fer_explain.errors import UserError


@dataclass
class Explanation:
    method: str
    target_index: int
    grid: np.ndarray  # (7, 7) float32, row-major = token order
    signed: bool  # True: positive = evidence for the target, negative = against; False: >= 0
    meta: dict = field(default_factory=dict)  # settings and diagnostics, e.g. {"baseline": "zeros", "n_steps": 32}


class ExplanationUnavailable(UserError):
    """The method cannot explain this model (e.g. spatial attention on a model built without it)."""


class Explainer:
    """Subclasses set `name` and `signed` and implement `attribute`; they keep no per-call state on `self`, so one
    instance may serve several threads at once. The model is only read: never hooked, never put in train mode."""

    name: str = ""
    signed: bool = False

    def __init__(self, model: nn.Module):
        self.model = model

    def attribute(self, attended: torch.Tensor, target: torch.Tensor,
                  spatial_attention: torch.Tensor | np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
        """(B, 7, 7) float32 grids and one meta dict per face."""
        raise NotImplementedError

    def explain(self, attended: torch.Tensor, target: torch.Tensor,
                spatial_attention: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """attended (B, C, 7, 7), target (B,) class indices -> (B, 7, 7) float32."""
        return self.attribute(attended, target, spatial_attention)[0]

    def explanations(self, attended: torch.Tensor, target: torch.Tensor,
                     spatial_attention: torch.Tensor | np.ndarray | None = None) -> list[Explanation]:
        grids, metas = self.attribute(attended, target, spatial_attention)
        return [Explanation(self.name, int(t), g, self.signed, m) for g, t, m in zip(grids, target.tolist(), metas)]


def prepare_inputs(attended: torch.Tensor, target: torch.Tensor | int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A float32 copy of the attended map that autograd may use (maps made under `torch.inference_mode` may not
    be), and the targets as a (B,) long tensor on the same device, checked against the batch."""
    if attended.dim() == 3:
        attended = attended.unsqueeze(0)
    if attended.dim() != 4:
        raise ValueError(f"attended map must be (B, C, H, W); got shape {tuple(attended.shape)}")
    with torch.inference_mode(False):
        attended = attended.detach().float().clone()
        target = torch.as_tensor(target, dtype=torch.long, device=attended.device).reshape(-1).clone()
    if target.numel() == 1 and attended.shape[0] > 1:
        target = target.expand(attended.shape[0]).clone()
    if target.numel() != attended.shape[0]:
        raise ValueError(f"{target.numel()} targets for {attended.shape[0]} attended maps")
    return attended, target


def to_grid(values: torch.Tensor, attended: torch.Tensor) -> np.ndarray:
    """Per-token values (B, H*W) back to (B, H, W) float32 numpy, row-major like `map_to_tokens`."""
    return values.detach().float().reshape(attended.shape[0], *attended.shape[-2:]).cpu().numpy().astype(np.float32)
