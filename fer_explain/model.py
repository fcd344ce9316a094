"""The Bi-LSTM enhanced dual attention network and its no-Bi-LSTM baseline, in named stages.

    forward_features : backbone                       x (B,3,224,224) -> F (B,C,7,7)
    attend           : channel (eq. 1) then spatial (eq. 2) attention, each multiplying the map -> A (B,C,7,7)
    tokens           : A read row-major as 49 tokens   -> (B,49,C)
    forward_tokens   : Bi-LSTM (full) or mean over tokens (baseline), then the head -> logits (B,8)

Explainers aim at the stable attribute names: `backbone`, `channel_attention`, `spatial_attention`,
`attended` (an identity whose output is A, for hooks that want the map), `sequence`, `head`. Grad-CAM targets the
same map A through its own per-call identity (explain/gradcam.py), so it never hooks the shared model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fer_explain.attention import create_attention
from fer_explain.backbones import create_backbone
from fer_explain.config import ModelConfig
from fer_explain.sequence import BiLSTMReader, TokenMeanPool, map_to_tokens


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, K)
    spatial_attention: torch.Tensor | None  # (B, 7, 7) sigmoid weights, None without spatial attention
    tokens: torch.Tensor  # (B, 49, C): the sequence that enters the Bi-LSTM (or the baseline's pooling)
    sequence_outputs: torch.Tensor | None  # (B, 49, 2*hidden) per-token Bi-LSTM outputs; None for the baseline

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.float().softmax(-1)


class EmotionNet(nn.Module):
    def __init__(self, config: ModelConfig, backbone_weights=None):
        super().__init__()
        self.config = config
        self.backbone, channels = create_backbone(config.backbone, backbone_weights)
        self.channel_attention = create_attention(config.channel_attention, channels, config.reduction)
        self.spatial_attention = create_attention(config.spatial_attention, channels,
                                                  kernel_size=config.spatial_kernel)
        self.attended = nn.Identity()
        if config.variant == "full":
            self.sequence = BiLSTMReader(channels, config.lstm_hidden, config.lstm_layers, config.lstm_dropout)
            pooled = self.sequence.out_features
        else:
            self.sequence = TokenMeanPool()
            pooled = channels
        self.head = nn.Sequential(nn.Linear(pooled, config.head_hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(config.head_dropout), nn.Linear(config.head_hidden, config.num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def attend(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attended map and the spatial-attention weights (B, 7, 7) (None when spatial attention is off)."""
        x = features if self.channel_attention is None else self.channel_attention(features)
        weights = None
        if self.spatial_attention is not None:
            gate = self.spatial_attention.gate(x)
            x, weights = x * gate, gate[:, 0]
        return self.attended(x), weights

    def forward_sequence(self, tokens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        return self.sequence(tokens)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits from the token sequence alone: what token attributions differentiate."""
        return self.forward_head(self.forward_sequence(tokens)[1])

    def forward_all(self, x: torch.Tensor) -> ModelOutput:
        attended, weights = self.attend(self.forward_features(x))
        tokens = map_to_tokens(attended)
        sequence_outputs, pooled = self.forward_sequence(tokens)
        return ModelOutput(self.forward_head(pooled), weights, tokens, sequence_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits


def build_model(config: ModelConfig, backbone_weights=None) -> EmotionNet:
    return EmotionNet(config, backbone_weights)
