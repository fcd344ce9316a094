"""The optimizer and the learning-rate schedule a recipe names: Adam, AdamW or SGD (momentum 0.9) with weight decay,
and a per-epoch multiplier: linear warm-up over `warmup_epochs`, then cosine decay to zero or a constant rate."""
from __future__ import annotations

import math

import torch


def make_optimizer(recipe: dict, model: torch.nn.Module):
    """(optimizer over the trainable parameters, LambdaLR stepped once per epoch) for `recipe`."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
             "sgd": lambda p, lr, weight_decay: torch.optim.SGD(p, lr, momentum=0.9, weight_decay=weight_decay)}
    # fused Adam(W) on CUDA: one kernel per step instead of several per parameter tensor (same update rule)
    fused = {"fused": True} if recipe["optimizer"] != "sgd" and next(model.parameters()).is_cuda else {}
    trainable = [p for p in model.parameters() if p.requires_grad]  # a frozen backbone's are not
    optimizer = kinds[recipe["optimizer"]](trainable, lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                                           **fused)
    warmup, epochs = recipe["warmup_epochs"], recipe["epochs"]

    def factor(epoch: int) -> float:  # LR multiplier for the epoch about to run (stepped once per epoch)
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        if recipe["lr_schedule"] == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup)))
        return 1.0
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
