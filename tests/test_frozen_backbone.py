"""Frozen-backbone training (training/frozen_backbone.py): the frozen modules' weights and batch-norm statistics do
not move while a trainable tail's do, the cached features are computed once and reused, mirrored features are the
mirror images' features, the recipe refuses what cached features cannot do, and the checkpoint predicts through the
whole network as validation said. Synthetic data and a random resnet18 only."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fer_explain.errors import UserError
from test_training import REPO, write_ferplus_npz
from training import train

FROZEN = REPO / "training/configs/frozen_backbone.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_ferplus_npz(tmp_path_factory.mktemp("ferplus"), {"train_0": 4, "val": 2, "test": 1})


def frozen_args(data, out, cache, *extra):
    return train.get_args_parser().parse_args(
        ["--config", str(FROZEN), "--data", str(data), "--out", str(out), "--feature-cache", str(cache),
         "--backbone", "resnet18", "--batch-size", "4", "--device", "cpu", "--seed", "0", *extra])


@pytest.fixture(scope="module")
def frozen_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    return train.main(frozen_args(data_dir, root / "run", root / "cache", "--epochs", "3")), root


@pytest.fixture(scope="module")
def tail_run(data_dir, tmp_path_factory):
    """resnet18's last module (layer4) trained too, on cached layer3 outputs and their mirror images'."""
    root = tmp_path_factory.mktemp("tail")
    config = root / "tail.yaml"
    config.write_text(FROZEN.read_text() + "trainable_backbone_tail: 1\nhflip: true\n")
    args = frozen_args(data_dir, root / "run", root / "cache", "--epochs", "3")
    args.config = str(config)
    return train.main(args), root


def initial_model():
    from fer_explain.config import ModelConfig
    from fer_explain.model import build_model

    torch.manual_seed(0)  # train.main seeds with --seed before building the model: the same initial weights
    return build_model(ModelConfig(backbone="resnet18"))


@pytest.mark.parametrize("run, trained_prefix", [("frozen_run", None), ("tail_run", "backbone.7.")])
def test_only_what_follows_the_frozen_modules_learns(run, trained_prefix, request):
    from fer_explain.checkpoint import load_checkpoint

    result, _ = request.getfixturevalue(run)
    trained = load_checkpoint(result.run_dir).model.state_dict()
    initial = initial_model().state_dict()
    backbone = [k for k in initial if k.startswith("backbone.")]
    assert any(k.endswith("running_mean") for k in backbone)  # batch-norm statistics are compared too
    for k in backbone:
        moved = not torch.equal(trained[k], initial[k])
        in_tail = trained_prefix is not None and k.startswith(trained_prefix)
        if in_tail and (k.endswith("weight") or k.endswith("running_mean")):
            assert moved, f"{k} belongs to the trainable tail but did not change"
        elif not in_tail:
            assert not moved, f"{k} is frozen but changed"
    assert not torch.equal(trained["head.0.weight"], initial["head.0.weight"])
    assert result.log[-1]["train_loss"] < result.log[0]["train_loss"]
    info = json.loads((result.run_dir / "model.json").read_text())["data"]["frozen_backbone"]
    assert info["trainable_tail"] == (0 if trained_prefix is None else 1)


@pytest.mark.parametrize("run", ["frozen_run", "tail_run"])
def test_validation_on_cached_features_matches_the_whole_network_on_images(run, data_dir, request):
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.evaluate import predict_probabilities

    result, _ = request.getfixturevalue(run)
    ckpt = load_checkpoint(result.run_dir)
    val = load_split(data_dir, "val")
    probs = predict_probabilities(ckpt.model, val, ckpt.preprocessing, "cpu", progress=False)
    nll = -np.log(probs[np.arange(len(val)), val.labels.numpy()]).mean()
    # features were cached under bf16 autocast and stored as fp16; the checkpoint runs in fp32 on the images
    assert nll == pytest.approx(result.best_validation["loss"], rel=0.05, abs=0.02)


def test_float32_features_make_validation_match_inference_exactly(data_dir, tmp_path):
    from safetensors import safe_open

    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.evaluate import predict_probabilities
    from fer_explain.transforms import eval_transform

    config = tmp_path / "fp32.yaml"
    config.write_text(FROZEN.read_text() + "feature_precision: float32\n")
    args = frozen_args(data_dir, tmp_path / "run", tmp_path / "cache", "--epochs", "2")
    args.config = str(config)
    result = train.main(args)
    cached = {}
    for path in (tmp_path / "cache").glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            assert f.metadata()["stored"] == "float32"
            cached[f.metadata()["split"]] = f.get_tensor("features")
    ckpt = load_checkpoint(result.run_dir)
    val = load_split(data_dir, "val")
    with torch.inference_mode():  # what inference computes: the frozen modules in float32 on the resized images
        direct = ckpt.model.backbone(eval_transform(val.images, ckpt.preprocessing))
    assert cached["val"].dtype == torch.float32
    assert float((cached["val"] - direct).norm() / direct.norm()) < 1e-5  # bfloat16 rounding alone: ~2e-3
    probs = predict_probabilities(ckpt.model, val, ckpt.preprocessing, "cpu", progress=False)
    nll = -np.log(probs[np.arange(len(val)), val.labels.numpy()]).mean()
    # the same numbers as inference, up to float32 summation order (bf16 features: only within 5 %, test above)
    assert nll == pytest.approx(result.best_validation["loss"], rel=1e-4)
    assert json.loads((result.run_dir / "model.json").read_text())["data"]["frozen_backbone"]["features"].startswith(
        "float32")


def test_features_are_cached_once_and_reused(frozen_run, data_dir, monkeypatch):
    from training import frozen_backbone

    _, root = frozen_run
    cached = sorted((root / "cache").glob("*.safetensors"))
    assert len(cached) == 2  # train and val
    monkeypatch.setattr(frozen_backbone, "compute_features",
                        lambda *a, **k: pytest.fail("features were recomputed although cached"))
    again = train.main(frozen_args(data_dir, root / "baseline", root / "cache", "--epochs", "1",
                                   "--variant", "baseline"))
    assert len(again.log) == 1 and sorted((root / "cache").glob("*.safetensors")) == cached


def test_other_backbone_weights_get_other_features(frozen_run, data_dir, tmp_path):
    _, root = frozen_run
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    train.main(frozen_args(data_dir, tmp_path / "run", cache, "--epochs", "1", "--seed", "1"))  # other random init
    assert len(list(cache.glob("*.safetensors"))) == 4


def test_mirrored_features_are_the_mirror_images_features(tail_run, data_dir):
    from safetensors import safe_open

    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from training.frozen_backbone import compute_features, frozen_modules

    result, root = tail_run
    cached = {}
    for path in (root / "cache").glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            cached[f.metadata()["split"]] = f.get_tensor("features")
    assert sorted(cached) == ["train", "train mirrored", "val"]
    images = load_split(data_dir, "train").images
    frozen = frozen_modules(initial_model(), tail=1)
    mirrored = compute_features(frozen, images.flip(-1), load_checkpoint(result.run_dir).preprocessing,
                                torch.device("cpu"))
    assert cached["train mirrored"].shape == (len(images), 256, 14, 14)  # layer3's output: layer4 is trained

    def distance(a, b):  # relative: bf16 rounding differs a little between the two resize/flip orders
        return float((a.float() - b.float()).norm() / b.float().norm())
    assert distance(cached["train mirrored"], mirrored) < 0.02
    assert distance(cached["train"], mirrored) > 5 * distance(cached["train mirrored"], mirrored)


@pytest.mark.parametrize("setting, message", [
    ("rotation_degrees: 10", "cached features"), ("flip_tta: true", "cached features"),
    ("ema: 0.99", "cached features"),
    ("trainable_backbone_tail: 8", "between 0 and 7"),
    ("freeze_backbone: false\ntrainable_backbone_tail: 2", "only means something"),
    ("feature_precision: float64", "feature_precision must be one of bfloat16, float32")])
def test_a_frozen_recipe_refuses_what_cached_features_cannot_do(setting, message, data_dir, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(FROZEN.read_text() + setting + "\n")
    args = frozen_args(data_dir, tmp_path / "run", tmp_path / "cache")
    args.config = str(config)
    with pytest.raises(UserError, match=message):
        train.main(args)
