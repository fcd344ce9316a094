"""Explainers and faithfulness on small stand-ins for EmotionNet (anything with `forward_tokens` and the stable
attribute names): shapes, ranges, IG completeness, no hooks left behind, flat memory, deletion/insertion ranking,
thread safety, determinism, and the cuDNN switch."""
from __future__ import annotations

import gc
import os
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from fer_explain.errors import UserError
from fer_explain.explain import EXPLAINERS, ExplanationUnavailable
from fer_explain.explain.faithfulness import RANDOM, deletion_insertion, importance_order
from fer_explain.explain.grad_context import active_users, gradients_enabled
from fer_explain.sequence import BiLSTMReader, TokenMeanPool, map_to_tokens

C, K = 6, 8
GRADIENT_METHODS = ("token_saliency", "token_occlusion", "gradcam", "gradcam++")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyTokenNet(nn.Module):
    """EmotionNet's token interface at toy size: Bi-LSTM (or mean pooling) over the 49 tokens, then a head."""

    def __init__(self, variant: str = "full", spatial: bool = True, seed: int = 0, channels: int = C):
        super().__init__()
        torch.manual_seed(seed)
        self.spatial_attention = nn.Identity() if spatial else None  # only its presence matters to the explainers
        self.sequence = BiLSTMReader(channels, 5, 2, 0.0) if variant == "full" else TokenMeanPool()
        self.head = nn.Linear(10 if variant == "full" else channels, K)
        self.fail = None  # "forward" or "backward": raise mid-explanation

    def forward_tokens(self, tokens):
        logits = self.head(self.sequence(tokens)[1])
        if self.fail == "forward":
            raise RuntimeError("boom in forward")
        if self.fail == "backward":
            logits = _ExplodeOnBackward.apply(logits)
        return logits


class _ExplodeOnBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("boom in backward")


class DecisiveToken(nn.Module):
    """Logits depend on token 24 (the centre) only: class 0's logit grows with that token's features."""

    spatial_attention = None

    def forward_tokens(self, tokens):
        logits = torch.zeros(tokens.shape[0], K, dtype=tokens.dtype, device=tokens.device)
        return logits + torch.nn.functional.one_hot(torch.tensor(0), K) * 4.0 * tokens[:, 24].sum(-1, keepdim=True)


def attended_maps(batch: int = 2, seed: int = 0, channels: int = C) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, 7, 7, generator=g)  # >= 0 like ReLU features times sigmoid gates


def all_hooks(module: nn.Module) -> dict:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")
    found = {f"{n}.{h}": len(getattr(m, h)) for n, m in module.named_modules() for h in names
             if len(getattr(m, h, {}) or {})}
    from torch.nn.modules import module as module_lib
    for g in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
              "_global_backward_pre_hooks"):
        if len(getattr(module_lib, g, {})):
            found[g] = len(getattr(module_lib, g))
    return found


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("variant", ["full", "baseline"])
def test_shapes_and_ranges(method, variant):
    model = TinyTokenNet(variant).eval()
    explainer = EXPLAINERS[method](model)
    grids = explainer.explain(attended_maps(), torch.tensor([1, 3]))
    assert grids.shape == (2, 7, 7) and grids.dtype == np.float32 and np.isfinite(grids).all()
    assert np.abs(grids).max() > 0
    if method.startswith("gradcam"):
        assert grids.min() >= 0 and grids.max() <= 1 + 1e-6
        assert not explainer.signed
    else:
        assert explainer.signed
    assert not model.training


def test_spatial_attention_comes_from_the_forward_pass_and_is_never_faked():
    weights = torch.sigmoid(torch.randn(2, 7, 7))
    explainer = EXPLAINERS["spatial_attention"](TinyTokenNet())
    grids = explainer.explain(attended_maps(), torch.tensor([0, 0]), spatial_attention=weights)
    np.testing.assert_allclose(grids, weights.numpy())
    assert grids.min() >= 0 and grids.max() <= 1
    with pytest.raises(ValueError):
        explainer.explain(attended_maps(), torch.tensor([0, 0]))  # the weights must be passed, not invented
    with pytest.raises(ExplanationUnavailable, match="not available"):
        EXPLAINERS["spatial_attention"](TinyTokenNet(spatial=False)).explain(attended_maps(), torch.tensor([0, 0]),
                                                                               spatial_attention=weights)
    assert issubclass(ExplanationUnavailable, UserError)


@pytest.mark.parametrize("variant", ["full", "baseline"])
def test_integrated_gradients_completeness(variant):
    model = TinyTokenNet(variant).eval()
    attended, target = attended_maps(), torch.tensor([2, 5])
    explanations = EXPLAINERS["token_saliency"](model).explanations(attended, target)
    tokens = map_to_tokens(attended)
    with torch.no_grad():
        gap = (model.forward_tokens(tokens) - model.forward_tokens(torch.zeros_like(tokens)))[[0, 1], target]
    for e, g in zip(explanations, gap.tolist()):
        assert e.meta["baseline"] == "zeros" and e.meta["n_steps"] > 0
        assert abs(float(e.grid.sum()) - g) <= 0.02 * abs(g) + 1e-4, (e.grid.sum(), g)


@pytest.mark.parametrize("method", ["token_saliency", "token_occlusion"])
def test_token_methods_find_the_decisive_token(method):
    grid = EXPLAINERS[method](DecisiveToken()).explain(attended_maps(1), torch.tensor([0]))[0]
    assert int(np.argmax(grid)) == 24 and grid.reshape(-1)[24] > 0
    assert np.abs(np.delete(grid.reshape(-1), 24)).max() < 1e-6  # no other token matters to this model


def test_a_map_of_ties_is_not_scored_in_the_random_references_own_order():
    # all 49 cells tied: the map's order is its tie-break alone; had it been drawn from the same stream as the random
    # reference, a single random order would score exactly the same and the map would look like chance by construction
    model = TinyTokenNet().eval()
    scores = deletion_insertion(model, attended_maps(1)[0], 0, {"flat": np.zeros((7, 7), np.float32)}, n_random=1)
    assert scores["flat"]["deletion_auc"] != scores[RANDOM]["deletion_auc"]


def test_deletion_ranks_the_decisive_map_above_random():
    attended = attended_maps(1)[0] + 0.5
    pointing = np.zeros((7, 7), np.float32)
    pointing[3, 3] = 1.0  # token 24
    wrong = np.zeros((7, 7), np.float32)
    wrong[0, 0] = 1.0
    wrong[3, 3] = -1.0  # signed: evidence against goes last
    scores = deletion_insertion(DecisiveToken(), attended, 0, {"pointing": pointing, "wrong": wrong}, n_random=5)
    assert scores["pointing"]["deletion_auc"] < scores[RANDOM]["deletion_auc"] < scores["wrong"]["deletion_auc"]
    assert scores["pointing"]["insertion_auc"] > scores[RANDOM]["insertion_auc"] > scores["wrong"]["insertion_auc"]
    assert all(0 <= s[k] <= 1 for s in scores.values() for k in ("deletion_auc", "insertion_auc"))
    coarse = deletion_insertion(DecisiveToken(), attended, 0, {"pointing": pointing}, tokens_per_step=7,
                                with_curves=True)
    assert len(coarse["pointing"]["fraction"]) == len(coarse["pointing"]["deletion_curve"]) == 8  # 0, 7, ..., 49 tokens
    assert coarse["pointing"]["deletion_auc"] < coarse[RANDOM]["deletion_auc"]


def test_importance_order_is_signed_deterministic_and_breaks_ties_at_random():
    grid = np.zeros((7, 7))
    grid[6, 6], grid[0, 1] = 2.0, -3.0
    order = importance_order(grid)
    assert order[0] == 48 and order[-1] == 1 and sorted(order) == list(range(49))
    assert np.array_equal(order, importance_order(grid))  # same seed, same order
    ties = [importance_order(grid, seed)[1:-1] for seed in range(20)]  # the 47 zero cells
    assert len({tuple(t) for t in ties}) == 20  # not token order every time: the map did not choose one
    # over seeds, a tied cell is as often early as late: no row of the face is always deleted first
    first_half_share = np.mean([np.isin(np.arange(0, 21), t[:23]).mean() for t in ties])
    assert 0.35 < first_half_share < 0.65


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("fail", [None, "forward", "backward"])
def test_no_hooks_left_and_state_restored(method, fail, monkeypatch):
    from fer_explain.explain import gradcam

    wrappers = []  # Grad-CAM hooks its own per-call wrapper, never the shared model: those hooks must go too

    class RecordedWrapper(gradcam.AttendedToLogits):
        def __init__(self, model):
            super().__init__(model)
            wrappers.append(self)

    monkeypatch.setattr(gradcam, "AttendedToLogits", RecordedWrapper)
    model = TinyTokenNet().eval().requires_grad_(False)  # frozen, as Predictor holds it
    model.fail = fail
    explainer = EXPLAINERS[method](model)
    grad_mode = torch.is_grad_enabled()
    if fail is None or (fail == "backward" and method == "token_occlusion"):  # occlusion never runs backward
        explainer.explain(attended_maps(), torch.tensor([0, 1]))
    else:
        with pytest.raises(RuntimeError, match="boom"):
            explainer.explain(attended_maps(), torch.tensor([0, 1]))
    assert len(wrappers) == (1 if method.startswith("gradcam") else 0)
    assert all_hooks(model) == {} and all(all_hooks(w) == {} for w in wrappers)
    assert torch.is_grad_enabled() == grad_mode and active_users() == 0
    assert not any(p.requires_grad or p.grad is not None for p in model.parameters())  # still frozen, no grads
    assert not model.training


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc (Linux)")
def test_memory_stays_flat_over_repeated_explanations():
    # 256 channels: a leaked graph or map per call (IG alone builds 16 x 49 x 256 floats) would show in RSS
    model = TinyTokenNet(channels=256).eval().requires_grad_(False)
    attended, target = attended_maps(1, channels=256), torch.tensor([0])
    explainers = [EXPLAINERS[m](model) for m in GRADIENT_METHODS]

    def run(n):
        for _ in range(n):
            grids = {e.name: e.explain(attended, target)[0] for e in explainers}
            deletion_insertion(model, attended, 0, grids, tokens_per_step=7)

    run(10)  # warm-up: allocator pools, lazy imports
    gc.collect()
    rss = _rss_bytes()
    tracemalloc.start()
    heap = tracemalloc.get_traced_memory()[0]
    run(100)
    gc.collect()
    heap_grown = tracemalloc.get_traced_memory()[0] - heap
    tracemalloc.stop()
    rss_grown = _rss_bytes() - rss
    assert heap_grown < 1_000_000, f"Python heap grew by {heap_grown} bytes over 100 rounds of explanations"
    assert rss_grown < 40_000_000, f"RSS grew by {rss_grown} bytes over 100 rounds of explanations"


def test_same_input_same_maps_and_threads_match_serial():
    model = TinyTokenNet().eval().requires_grad_(False)
    faces = [attended_maps(1, seed=s) for s in range(4)]
    explainers = {m: EXPLAINERS[m](model) for m in GRADIENT_METHODS}

    def explain_all(face):
        return {m: e.explain(face, torch.tensor([3])) for m, e in explainers.items()}

    serial = [explain_all(f) for f in faces]
    again = [explain_all(f) for f in faces]
    barrier = threading.Barrier(4)

    def in_thread(face):
        barrier.wait()  # start together so the calls really overlap
        return [explain_all(face) for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(in_thread, faces))
    for s, a, t in zip(serial, again, threaded):
        for m in GRADIENT_METHODS:
            np.testing.assert_array_equal(s[m], a[m])
            for repeat in t:
                np.testing.assert_allclose(repeat[m], s[m], rtol=1e-5, atol=1e-7)


def test_cudnn_switch_is_shared_between_threads(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "enabled", True)
    inside, release = threading.Barrier(3), threading.Event()

    def user():
        with gradients_enabled("cuda"):
            assert torch.is_grad_enabled()
            inside.wait()
            release.wait(5)

    threads = [threading.Thread(target=user) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(5)
    assert torch.backends.cudnn.enabled is False and active_users() == 2
    release.set()
    for t in threads:
        t.join()
    assert torch.backends.cudnn.enabled is True and active_users() == 0
    with gradients_enabled("cpu"):  # CPU: nothing to switch
        assert torch.backends.cudnn.enabled is True


def test_registry_names():
    assert set(EXPLAINERS) == {"spatial_attention", "token_saliency", "token_occlusion", "gradcam", "gradcam++"}
    assert all(cls.name == name for name, cls in EXPLAINERS.items())
