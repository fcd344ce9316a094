"""Predictor: checkpoint loading (file, run dir, offline hf://), batched prediction on crops, explanations with
targets by name/synonym/index, model variants, determinism and thread safety. Tiny resnet18 models with a small
LSTM and head keep each call fast on CPU."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from fer_explain.checkpoint import Checkpoint, save_checkpoint
from fer_explain.classes import CLASSES
from fer_explain.config import ModelConfig, Preprocessing
from fer_explain.errors import UserError
from fer_explain.model import build_model
from fer_explain.device import pick_device
from fer_explain.predictor import FaceExplanation, Predictor
from fer_explain.transforms import eval_transform


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_model(**overrides):
    torch.manual_seed(0)
    config = ModelConfig(backbone="resnet18", lstm_hidden=8, head_hidden=16, **overrides)
    return build_model(config).eval()


def predictor(**overrides) -> Predictor:
    model = tiny_model(**overrides)
    return Predictor(Checkpoint(model, model.config, Preprocessing(), {}, None), device="cpu")


@pytest.fixture(scope="module")
def full():
    return predictor()


def faces(n=2, seed=0, size=48):
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(UserError):
        pick_device("quantum")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UserError, match="1 CUDA device"):  # not torch's "invalid device ordinal" later
        pick_device("cuda:1")


def test_loads_checkpoint_from_file_and_run_dir(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", model, Preprocessing())
    x = faces(2)
    with torch.no_grad():
        expected = model(eval_transform(x, Preprocessing())).softmax(-1).numpy()
    for spec in (path, str(tmp_path / "run")):
        p = Predictor(spec, device="cpu")
        assert p.name == "resnet18 Bi-LSTM" and p.classes == CLASSES
        got = np.stack([f.probabilities for f in p.predict(x)])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert all(not q.requires_grad for q in p.model.parameters()) and not p.model.training


def test_missing_and_offline_hub_checkpoints_are_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        Predictor(tmp_path / "nothing.safetensors", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError, match="Hugging Face Hub"):
        Predictor("hf://nobody-here/no-such-repo/model.safetensors", device="cpu")


def test_predict_accepts_tensors_and_crops_of_any_size(full):
    x = faces(2)
    from_tensor = full.predict(x)
    gray_crops = [f[0].numpy() for f in x]
    from_list = full.predict(gray_crops)
    for a, b in zip(from_tensor, from_list):
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5, atol=1e-7)
    p = from_tensor[0]
    assert p.probabilities.shape == (8,) and abs(p.probabilities.sum() - 1) < 1e-5
    assert p.label == CLASSES[p.label_index] and p.label_index == int(p.probabilities.argmax())
    assert p.attended.shape == (512, 7, 7) and not p.attended.requires_grad
    assert p.spatial_attention.shape == (7, 7) and 0 <= p.spatial_attention.min() <= p.spatial_attention.max() <= 1
    # an RGB crop of another size: converted to gray and brought to 48x48 like the training images
    rgb = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    mixed = full.predict([rgb, gray_crops[0]])
    assert len(mixed) == 2
    np.testing.assert_allclose(mixed[1].probabilities, from_tensor[0].probabilities, rtol=1e-5, atol=1e-7)
    assert full.predict([]) == []


@pytest.mark.parametrize("bad", [np.zeros((48, 48), np.float32), np.zeros((2, 3, 4, 5), np.uint8), "face.png"])
def test_bad_faces_are_user_errors(full, bad):
    with pytest.raises(UserError):
        full.predict(bad if isinstance(bad, str) else [bad])


def test_explain_default_methods_targets_and_faithfulness(full):
    p = full.predict(faces(1))[0]
    e = full.explain(p)
    assert isinstance(e, FaceExplanation) and e.target == p.label and e.target_index == p.label_index
    assert set(e.maps) == {"spatial_attention", "token_saliency", "gradcam"} and e.unavailable == {}
    for name, m in e.maps.items():
        assert m.grid.shape == (7, 7) and m.grid.dtype == np.float32 and m.method == name
    np.testing.assert_allclose(e.maps["spatial_attention"].grid, p.spatial_attention)
    assert e.maps["gradcam"].grid.min() >= 0
    assert set(e.faithfulness) == {"spatial_attention", "token_saliency", "gradcam", "random"}
    assert all(0 <= v["deletion_auc"] <= 1 and 0 <= v["insertion_auc"] <= 1 for v in e.faithfulness.values())
    assert full.explain(p, target="angry", faithfulness=False).target == "anger"  # synonym
    assert full.explain(p, target="Happy", methods=["gradcam"], faithfulness=False).target_index == 1
    assert full.explain(p, target=7, methods=["gradcam"], faithfulness=False).target == "contempt"
    assert all(q.grad is None for q in full.model.parameters())


@pytest.mark.parametrize("target", ["boredom", 8, -1, 2.5])
def test_unknown_target_lists_the_classes(full, target):
    p = full.predict(faces(1))[0]
    with pytest.raises(UserError, match="neutral, happy, sad, surprise, fear, disgust, anger, contempt"):
        full.explain(p, target=target)


def test_unknown_method_is_a_user_error(full):
    with pytest.raises(UserError, match="token_saliency"):
        full.explain(full.predict(faces(1))[0], methods=["lime"])


def test_baseline_and_no_spatial_attention_models():
    base = predictor(variant="baseline")
    assert base.name == "resnet18 baseline"
    e = base.explain(base.predict(faces(1))[0], methods=["token_saliency", "gradcam", "gradcam++"])
    assert set(e.maps) == {"token_saliency", "gradcam", "gradcam++"}
    assert np.abs(e.maps["token_saliency"].grid).max() > 0
    plain = predictor(spatial_attention="none")
    p = plain.predict(faces(1))[0]
    assert p.spatial_attention is None
    e = plain.explain(p)
    assert "spatial_attention" not in e.maps and "not available" in e.unavailable["spatial_attention"]
    assert set(e.maps) == {"token_saliency", "gradcam"}


def test_same_input_same_maps_and_threads_match_serial(full):
    preds = full.predict(faces(4, seed=3))
    methods = ("spatial_attention", "token_saliency", "token_occlusion", "gradcam")

    def run(p):
        e = full.explain(p, methods=methods)
        return {m: x.grid for m, x in e.maps.items()}, e.faithfulness

    serial = [run(p) for p in preds]
    barrier = threading.Barrier(4)

    def in_thread(p):
        barrier.wait()
        return run(p)

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(in_thread, preds))
    again = run(preds[0])
    for m in methods:
        np.testing.assert_array_equal(again[0][m], serial[0][0][m])
    for (s_maps, s_faith), (t_maps, t_faith) in zip(serial, threaded):
        for m in methods:
            np.testing.assert_allclose(t_maps[m], s_maps[m], rtol=1e-5, atol=1e-7)
        for m in s_faith:
            assert t_faith[m]["deletion_auc"] == pytest.approx(s_faith[m]["deletion_auc"], abs=1e-6)
