"""Faithfulness of a 7x7 importance grid by deletion and insertion over the 49 tokens (Petsiuk et al., RISE, 2018).

Order the tokens by decreasing importance (signed maps by signed value: positive evidence first; ties at random).
Deletion: replace tokens by the baseline (zeros, "no feature here", as in token saliency) in that order, a few per
step, and record the target-class probability after each step; the area under that curve over the fraction of
tokens removed, in [0, 1], is low when the map found what the prediction rests on. Insertion: start from all-zero
tokens and put them back in the same order; its area is high for a faithful map. A random order gives the reference
(the same curves for a few seeded random permutations, averaged): a map is informative when it beats random.

All curves of all maps and the random orders go through `model.forward_tokens` as batches of masked token
sequences (one forward pass per `batch_size` sequences), without gradients. The probability is the model's own
softmax: the checkpoint's calibration temperature (fer_explain.temperature) is a display choice, not the model, and
leaving it out keeps the scores of a model the same before and after `calibrate`.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import auc

from fer_explain.explain.base import prepare_inputs
from fer_explain.sequence import map_to_tokens

RANDOM = "random"


def importance_order(grid: np.ndarray, seed: int | list[int] = 0) -> np.ndarray:
    """Token indices (row-major) from most to least important. Ties (Grad-CAM's ReLU leaves many cells at exactly 0)
    go in a seeded random order: in token order they would always delete the top rows of the face first, an order
    of their own that the map never chose. Deterministic for a given seed."""
    values = -np.asarray(grid, dtype=np.float64).reshape(-1)
    shuffled = np.random.default_rng(seed).permutation(values.size)
    return shuffled[np.argsort(values[shuffled], kind="stable")]


def _interior_masks(order: np.ndarray, counts: list[int]) -> torch.Tensor:
    """Keep-masks (len(counts), T): row j has the first counts[j] tokens of `order` removed (0), the rest kept (1)."""
    keep = np.ones((len(counts), len(order)), dtype=np.float32)
    for row, k in enumerate(counts):
        keep[row, order[:k]] = 0.0
    return torch.from_numpy(keep)


@torch.no_grad()
def _target_probability(model, tokens: torch.Tensor, masks: torch.Tensor, target: int, batch_size: int) -> np.ndarray:
    """Target probability for each masked copy of `tokens` (T, C); masks (N, T), 1 = token present. The masked
    sequences are built chunk by chunk: all of them at once would be N x T x C floats (hundreds of MB for resnet50)."""
    probs = [model.forward_tokens(tokens[None] * chunk[..., None]).float().softmax(-1)[:, target]
             for chunk in masks.split(batch_size)]
    return torch.cat(probs).cpu().numpy()


def deletion_insertion(model, attended: torch.Tensor, target: int, grids: dict[str, np.ndarray], *,
                       n_random: int = 3, seed: int = 0, tokens_per_step: int = 1, batch_size: int = 128,
                       with_curves: bool = False) -> dict[str, dict]:
    """method -> {"deletion_auc", "insertion_auc"} for each grid, plus "random" -> the mean over `n_random` seeded
    random orders. attended: (C, 7, 7) or (1, C, 7, 7) for one face. `with_curves` adds the x axis and curves."""
    attended, _ = prepare_inputs(attended, target)  # a (1, C, 7, 7) float32 copy, usable outside inference mode
    tokens = map_to_tokens(attended)[0]  # (T, C)
    n_tokens = tokens.shape[0]
    rng = np.random.default_rng(seed)
    # ties get a random stream of their own: importance_order(grid, seed) would order them as the first random order
    orders = {name: importance_order(grid, [seed, 1]) for name, grid in grids.items()}
    if any(len(o) != n_tokens for o in orders.values()):
        raise ValueError(f"every grid must have {n_tokens} cells (one per token)")
    random_orders = [rng.permutation(n_tokens) for _ in range(n_random)]
    all_orders = list(orders.values()) + random_orders

    # the end points (all tokens / no token) are the same for every order: evaluated once, shared by all curves
    counts = list(range(tokens_per_step, n_tokens, tokens_per_step))
    x = np.asarray([0] + counts + [n_tokens], dtype=np.float64) / n_tokens
    keep = torch.cat([_interior_masks(o, counts) for o in all_orders]).to(tokens.device)
    ends = torch.stack([torch.ones(n_tokens), torch.zeros(n_tokens)]).to(tokens.device)
    probs = _target_probability(model, tokens, torch.cat([ends, keep, 1.0 - keep]), target, batch_size)
    full, empty, inner = probs[0], probs[1], probs[2:].reshape(2, len(all_orders), len(counts))
    n_orders = len(all_orders)
    deletion = np.concatenate([np.full((n_orders, 1), full), inner[0], np.full((n_orders, 1), empty)], axis=1)
    insertion = np.concatenate([np.full((n_orders, 1), empty), inner[1], np.full((n_orders, 1), full)], axis=1)

    def scores(rows: slice) -> dict:
        d, i = deletion[rows], insertion[rows]
        out = {"deletion_auc": float(np.mean([auc(x, c) for c in d])),
               "insertion_auc": float(np.mean([auc(x, c) for c in i]))}
        if with_curves:
            out.update(fraction=x.tolist(), deletion_curve=d.mean(0).tolist(), insertion_curve=i.mean(0).tolist())
        return out

    result = {name: scores(slice(m, m + 1)) for m, name in enumerate(orders)}
    if n_random:
        result[RANDOM] = scores(slice(len(orders), len(all_orders))) | {"n_orders": n_random, "seed": seed}
    return result
