"""Frozen-backbone training (training/frozen_backbone.py): the backbone's weights and batch-norm statistics do not
move, the cached features are computed once and reused, the recipe refuses image augmentation, and the checkpoint
predicts through the whole network as validation said. Synthetic data and a random resnet18 only."""
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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_training.py: one_thread
    yield
    torch.set_num_threads(before)


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


def test_only_what_follows_the_backbone_learns(frozen_run):
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.config import ModelConfig
    from fer_explain.model import build_model

    result, _ = frozen_run
    trained = load_checkpoint(result.run_dir).model.state_dict()
    torch.manual_seed(0)  # train.main seeds with --seed before building the model: the same initial weights
    initial = build_model(ModelConfig(backbone="resnet18")).state_dict()
    backbone = [k for k in initial if k.startswith("backbone.")]
    assert any(k.endswith("running_mean") for k in backbone)  # batch-norm statistics are compared too
    for k in backbone:
        assert torch.equal(trained[k], initial[k]), k
    assert not torch.equal(trained["head.0.weight"], initial["head.0.weight"])
    assert result.log[-1]["train_loss"] < result.log[0]["train_loss"]
    assert json.loads((result.run_dir / "model.json").read_text())["data"]["frozen_backbone"]


def test_validation_on_cached_features_matches_the_whole_network_on_images(frozen_run, data_dir):
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.evaluate import predict_probabilities

    result, _ = frozen_run
    ckpt = load_checkpoint(result.run_dir)
    val = load_split(data_dir, "val")
    probs = predict_probabilities(ckpt.model, val, ckpt.preprocessing, "cpu", progress=False)
    nll = -np.log(probs[np.arange(len(val)), val.labels.numpy()]).mean()
    # features were cached under bf16 autocast and stored as fp16; the checkpoint runs in fp32 on the images
    assert nll == pytest.approx(result.best_validation["loss"], rel=0.05, abs=0.02)


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


@pytest.mark.parametrize("augmentation", ["hflip: true", "rotation_degrees: 10", "flip_tta: true", "ema: 0.99"])
def test_a_frozen_recipe_refuses_what_cached_features_cannot_do(augmentation, data_dir, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(FROZEN.read_text() + augmentation + "\n")
    args = frozen_args(data_dir, tmp_path / "run", tmp_path / "cache")
    args.config = str(config)
    with pytest.raises(UserError, match="cached features"):
        train.main(args)
