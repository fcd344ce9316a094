"""Frozen-backbone training: the backbone's C x 7 x 7 output F for every image is computed once and kept on disk, and
only what the paper puts after it is trained (channel and spatial attention, eqs. 1-2, the Bi-LSTM or the
baseline's pooling, and the head).

This is how a CPU with a few cores can still train the network: a mobilenet_v2 backbone at 224 x 224 is ~95 % of a
training step's cost, and the rest runs at ~100 images/s (full) or ~1300 images/s (baseline) on two cores. The
price: no augmentation that changes the image (rotation, flip), and the backbone keeps its initial (e.g. ImageNet)
weights and batch-norm statistics, so the checkpoint still holds the whole network and needs nothing else at
inference. A recipe asks for this with `freeze_backbone: true` (training/configs/frozen_backbone.yaml).

Features are computed under bfloat16 autocast on CPU (twice as fast as float32 there) and stored as float16; the
final test figures come from `fer_explain evaluate`, which runs the whole network in float32 on the images.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from fer_explain.errors import UserError
from fer_explain.sequence import map_to_tokens


class AfterBackbone(nn.Module):
    """The trainable part of an `EmotionNet`: features F -> logits, through the model's own stages."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # the backbone never runs in training, so its batch-norm statistics cannot move whatever its train/eval mode
        attended, _ = self.model.attend(features)
        return self.model.forward_tokens(map_to_tokens(attended))


def freeze(model: nn.Module) -> AfterBackbone:
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return AfterBackbone(model)


def backbone_digest(model: nn.Module) -> str:
    """sha256 of the backbone's weights and buffers: part of the cache key, so other weights get other features."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def _key(digest: str, fingerprint: str, preprocessing) -> str:
    """Same backbone weights, same images, same preprocessing -> same cached features."""
    h = hashlib.sha256(digest.encode())
    h.update(fingerprint.encode())
    h.update(json.dumps(preprocessing.to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:20]


@torch.inference_mode()
def compute_features(backbone: nn.Module, images: torch.Tensor, preprocessing, device: torch.device,
                     batch_size: int = 128, label: str = "") -> torch.Tensor:
    """float16 (N, C, 7, 7): the backbone's output for uint8 images (N, H, W) or (N, C, H, W)."""
    from tqdm import tqdm

    from fer_explain.transforms import eval_transform

    backbone = backbone.to(device).eval()
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"backbone features {label}", unit="batch",
                      disable=not sys.stderr.isatty(), file=sys.stderr):
        x = eval_transform(images[start:start + batch_size].to(device), preprocessing)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            chunks.append(backbone(x.contiguous(memory_format=torch.channels_last)).to(torch.float16).cpu())
    return torch.cat(chunks)


def cached_features(cache_dir: Path, model: nn.Module, digest: str, images: torch.Tensor, fingerprint: str,
                    preprocessing, device: torch.device, label: str) -> torch.Tensor:
    """The features from CACHE_DIR/<key>.safetensors, computed and written (atomically) when absent; `digest` is
    `backbone_digest(model)`, computed once by the caller for both splits."""
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / f"{_key(digest, fingerprint, preprocessing)}.safetensors"
    if path.is_file():
        return load_file(str(path))["features"]
    start = time.perf_counter()
    features = compute_features(model.backbone, images, preprocessing, device, label=label)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({"features": features.contiguous()}, str(partial),
              metadata={"split": label, "n": str(len(images)), "data_fingerprint": fingerprint,
                        "backbone": model.config.backbone, "autocast": "bfloat16", "stored": "float16"})
    partial.replace(path)  # a run killed while writing leaves no half file under the final name
    print(f"cached {label} backbone features {tuple(features.shape)} in {time.perf_counter() - start:.0f} s -> "
          f"{path}", file=sys.stderr)
    return features


@torch.inference_mode()
def predict_from_features(trainable: AfterBackbone, features: torch.Tensor, device: torch.device,
                          batch_size: int = 512):
    """Softmax probabilities (N, K) as a numpy array, for cached features."""
    trainable.eval()
    probs = [trainable(features[i:i + batch_size].to(device).float()).float().softmax(-1).cpu()
             for i in range(0, len(features), batch_size)]
    return torch.cat(probs).numpy()


def prepare_training(model: nn.Module, data: dict, val_set, preprocessing, data_info: dict, feature_cache: str, dist_):
    """For training.train: the images in `data` replaced by cached features, the trainable part, the validation
    features and labels; `data_info` (stored in the checkpoint) says how the features were made."""
    if dist_.world > 1:
        raise UserError("freeze_backbone runs in one process: start it with python, not torchrun")
    digest = backbone_digest(model)
    data["features"] = cached_features(feature_cache, model, digest, data.pop("images"),
                                       data_info["train"]["fingerprint"], preprocessing, dist_.device,
                                       "train").to(dist_.device)
    val = {"labels": val_set.labels.cpu().numpy(),
           "features": cached_features(feature_cache, model, digest, val_set.images, data_info["val"]["fingerprint"],
                                       preprocessing, dist_.device, "val")}
    data_info["frozen_backbone"] = {"feature_cache": str(Path(feature_cache).resolve()),
                                    "features": "bfloat16 autocast, stored as float16"}
    return freeze(model), val
