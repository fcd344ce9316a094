"""training/optimizer.py: the recipe's optimizer over the trainable parameters only, and its per-epoch LR schedule
(linear warm-up, then cosine to zero or constant)."""
from __future__ import annotations

import math

import pytest
import torch

from training.optimizer import make_optimizer


def recipe(**changes) -> dict:
    base = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 2, "epochs": 6,
            "lr_schedule": "cosine"}
    return {**base, **changes}


def rates(optimizer, scheduler, epochs: int) -> list[float]:
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_warm_up_then_cosine_to_zero():
    model = torch.nn.Linear(3, 2)
    optimizer, scheduler = make_optimizer(recipe(), model)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05
    expected = [1e-3 / 3, 2e-3 / 3] + [1e-3 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates(optimizer, scheduler, 6) == pytest.approx(expected)


@pytest.mark.parametrize("name, kind", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_constant_schedule_and_other_optimizers(name, kind):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)  # a frozen part (the frozen-backbone recipe) is not handed to the optimizer
    optimizer, scheduler = make_optimizer(recipe(optimizer=name, warmup_epochs=0, lr_schedule="constant"), model)
    assert isinstance(optimizer, kind)
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == 3 * 2 + 2
    assert optimizer.param_groups[0].get("momentum", 0.9) == 0.9
    assert rates(optimizer, scheduler, 4) == pytest.approx([1e-3] * 4)
