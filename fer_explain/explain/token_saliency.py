"""Token saliency: how much each of the 49 tokens read by the Bi-LSTM contributes to the target logit.

Integrated Gradients (Captum `IntegratedGradients`) on the token sequence (B, 49, C) entering the Bi-LSTM, through
`model.forward_tokens`. Baseline: all-zero tokens. The attended features are ReLU outputs multiplied by sigmoid
gates (eq. 1 and 2), so they are >= 0 and 0 means "no feature here": the zero sequence is the face with every
region switched off, not an arbitrary reference. Attributions are summed over channels, giving one signed value
per token (positive = evidence for the target), laid out row-major as a 7x7 grid. By completeness the 49 values
add up to f(tokens) - f(zeros) for the target logit, up to Captum's convergence delta (kept in `meta`).

n_steps = 16 Gauss-Legendre points. On the shipped mobilenet_v2 Bi-LSTM model the convergence delta relative to
f(x) - f(0) is 0.13 % at the median and 0.32 % at the 90th percentile over 1,000 FER+ test faces (python -m
training.faithfulness, results/faithfulness.md); random-init models, as in the tests, are rougher, and 8 steps
several times rougher again. 16 steps cost about half of 32. Pass n_steps to trade time for accuracy.

The baseline model (no Bi-LSTM, mean over tokens) reads the same 49 tokens, so the same code explains both and the
two are compared like for like.

Occlusion variant (`TokenOcclusion`): Captum `FeatureAblation` with one feature group per token, each token in turn
replaced by the same zero baseline; the value is the drop of the target logit (positive = the token helped). All 49
ablations run as one batch.
"""
from __future__ import annotations

import torch
from captum.attr import FeatureAblation, IntegratedGradients

from fer_explain.explain.base import Explainer, prepare_inputs, to_grid
from fer_explain.explain.grad_context import gradients_enabled
from fer_explain.sequence import map_to_tokens

DEFAULT_STEPS = 16


class TokenIntegratedGradients(Explainer):
    name = "token_saliency"
    signed = True

    def __init__(self, model, n_steps: int = DEFAULT_STEPS, internal_batch_size: int | None = None):
        super().__init__(model)
        self.n_steps = n_steps
        self.internal_batch_size = internal_batch_size  # bounds memory: B * n_steps sequences otherwise go at once

    def attribute(self, attended, target, spatial_attention=None):
        attended, target = prepare_inputs(attended, target)
        with gradients_enabled(attended.device):
            tokens = map_to_tokens(attended)
            # a new Captum object per call: nothing shared between threads
            ig = IntegratedGradients(self.model.forward_tokens)
            attributions, delta = ig.attribute(tokens, baselines=torch.zeros_like(tokens), target=target,
                                               n_steps=self.n_steps, internal_batch_size=self.internal_batch_size,
                                               return_convergence_delta=True)
        per_token = attributions.sum(-1)  # (B, 49): summed over channels
        metas = [{"baseline": "zeros", "n_steps": self.n_steps, "method": "gausslegendre", "target": "logit",
                  "attribution_sum": float(s), "convergence_delta": float(d)}
                 for s, d in zip(per_token.sum(1).tolist(), delta.tolist())]
        return to_grid(per_token, attended), metas


class TokenOcclusion(Explainer):
    name = "token_occlusion"
    signed = True

    def attribute(self, attended, target, spatial_attention=None):
        attended, target = prepare_inputs(attended, target)
        tokens = map_to_tokens(attended)
        n_tokens = tokens.shape[1]
        # one feature group per token: all C channels of token t share the id t (broadcast over batch and channels)
        groups = torch.arange(n_tokens, device=tokens.device).view(1, n_tokens, 1)
        with torch.no_grad():
            attributions = FeatureAblation(self.model.forward_tokens).attribute(
                tokens, baselines=0.0, target=target, feature_mask=groups, perturbations_per_eval=n_tokens)
        per_token = attributions[..., 0]  # the same value on every channel of a token
        metas = [{"baseline": "zeros", "target": "logit", "perturbation": "one token at a time"}
                 for _ in range(tokens.shape[0])]
        return to_grid(per_token, attended), metas
