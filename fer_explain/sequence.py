"""Spatial-to-sequence reading of the attended map and the Bi-LSTM over it (the paper's enhancement).

The attended C x 7 x 7 map becomes 49 tokens of size C in row-major order (token 0 = top-left, token 48 =
bottom-right). A 2-layer bidirectional LSTM reads them; the last hidden states of both directions of the top
layer are concatenated into one 2*hidden vector.
"""
from __future__ import annotations

import torch
from torch import nn


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C), row-major."""
    return x.flatten(2).transpose(1, 2)


class BiLSTMReader(nn.Module):
    def __init__(self, in_features: int, hidden: int = 256, layers: int = 2, dropout: float = 0.5):
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                            batch_first=True, bidirectional=True)
        self.out_features = 2 * hidden

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token outputs (B, T, 2*hidden) and the pooled vector [h_forward_last; h_backward_last] (B, 2*hidden)."""
        # float32 even under autocast: CUDA autocast runs the cuDNN LSTM in fp16 whatever the autocast dtype, and
        # bf16 training has no loss scaling to keep its fp16 gradients from underflowing. The LSTM is ~7% of FLOPs.
        with torch.autocast(tokens.device.type, enabled=False):
            outputs, (h_n, _) = self.lstm(tokens.float())
        return outputs, torch.cat([h_n[-2], h_n[-1]], dim=1)


class TokenMeanPool(nn.Module):
    """The baseline's global average pooling, written over tokens so both variants share the token interface."""

    def forward(self, tokens: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, tokens.mean(1)
