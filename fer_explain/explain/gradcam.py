"""Grad-CAM and Grad-CAM++ (pytorch-grad-cam) on the attended 7x7 map, the input of the token reader.

Grad-CAM: cam = ReLU(sum_c w_c A_c), w_c = mean over the 7x7 positions of d logit_target / d A_c.
Grad-CAM++: the same with the weights of eq. 19 of Chattopadhay et al. (arXiv 1710.11063).

The shared model is never hooked (several threads may explain at once). Each call builds a small wrapper whose
input is the attended map and whose own `nn.Identity` is the target layer, followed by
`model.forward_tokens(map_to_tokens(.))`; the library's hooks live on that per-call wrapper and are released in
`finally` (not through the CAM's `with` block, whose `__exit__` swallows IndexError). The input is the 7x7 map
itself, so the library's resize is 7x7 -> 7x7 and the grid is the cam before any upsampling, min-max scaled to
[0, 1] per face by `scale_cam_image`; `meta["raw_max"]` keeps the unscaled maximum (0: no positive evidence).

The library's constructor calls `wrapper.eval()`, which reaches the shared model: it is already in eval mode, so
that changes nothing. The library calls `loss.backward()`, which fills `.grad` of every model parameter that requires
grad; `Predictor` freezes its model (`requires_grad_(False)`) so nothing accumulates and no weight gradient is
computed.
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fer_explain.explain.base import Explainer, prepare_inputs
from fer_explain.explain.grad_context import gradients_enabled
from fer_explain.sequence import map_to_tokens


class AttendedToLogits(nn.Module):
    """attended map -> logits, with its own target layer; built per call so hooks never touch the shared model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.target_layer = nn.Identity()
        self.model = model

    def forward(self, attended: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tokens(map_to_tokens(self.target_layer(attended)))


class _CamExplainer(Explainer):
    cam_class: type = GradCAM
    signed = False

    def attribute(self, attended, target, spatial_attention=None):
        attended, target = prepare_inputs(attended, target)
        wrapper = AttendedToLogits(self.model)
        targets = [ClassifierOutputTarget(int(t)) for t in target.tolist()]
        with gradients_enabled(attended.device):
            # gradients must reach the identity's output; the input is a per-call leaf, so its .grad is ours
            inputs = attended.requires_grad_(True)
            cam = self.cam_class(model=wrapper, target_layers=[wrapper.target_layer])
            try:
                grids = cam(input_tensor=inputs, targets=targets)
                activations = cam.activations_and_grads.activations[0].numpy()
                gradients = cam.activations_and_grads.gradients[0].numpy()
                raw = np.maximum(cam.get_cam_image(inputs, wrapper.target_layer, targets, activations, gradients), 0)
            finally:
                cam.activations_and_grads.release()
        metas = [{"layer": "attended map (7x7, before the token reader)", "target": "logit",
                  "scaling": "ReLU then per-face min-max to [0, 1]", "raw_max": float(r.max())} for r in raw]
        return np.asarray(grids, dtype=np.float32), metas


class GradCAMExplainer(_CamExplainer):
    name = "gradcam"
    cam_class = GradCAM


class GradCAMPlusPlusExplainer(_CamExplainer):
    name = "gradcam++"
    cam_class = GradCAMPlusPlus
