"""Frozen-backbone training: the output of the backbone's first modules for every image is computed once and kept on
disk, and only what follows is trained: the backbone's last `trainable_backbone_tail` modules (none by default),
then what the paper puts after the backbone (channel and spatial attention, eqs. 1-2, the Bi-LSTM or the baseline's
pooling, and the head).

This is how a CPU with a few cores can still train the network: a mobilenet_v2 backbone at 224 x 224 is ~95 % of a
training step's cost when it all runs, and the rest trains at ~90 images/s (full) or ~1000 images/s (baseline) on
two cores; with mobilenet_v2's last four modules trained too (7 x 7 maps, 160 channels cached) it is ~70 and ~230.
The price: no rotation, and the frozen modules keep their initial (e.g. ImageNet) weights and batch-norm statistics.
A horizontal flip still works: with `hflip: true` the mirrored images' features are cached as well and each
training face takes one of the two at random. The checkpoint holds the whole network and needs nothing else at
inference. A recipe asks for this with `freeze_backbone: true` (training/configs/frozen_backbone*.yaml).

By default (`feature_precision: bfloat16`) features are computed under bfloat16 autocast (twice as fast as float32
on CPU) and stored as float16; the final test figures come from `fer_explain evaluate`, which runs the whole network
in float32 on the images. The trained part adapts to the bfloat16 features: on the same checkpoint, `evaluate`'s
float32 val accuracy differs from the val accuracy training records (-0.4 ± 0.6 pp over our runs, README).
`feature_precision: float32` computes and stores them in float32, as inference sees them, at twice the caching time
and memory.
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
    """The trainable part of an `EmotionNet`: cached output of the frozen backbone modules -> logits, through the
    backbone's trainable last modules and the model's own stages."""

    def __init__(self, model: nn.Module, tail: int = 0):
        super().__init__()
        self.model = model
        self.start = len(model.backbone) - tail

    def forward(self, cached: torch.Tensor) -> torch.Tensor:
        # the frozen modules never run in training, so their batch-norm statistics cannot move whatever their mode
        features = self.model.backbone[self.start:](cached)  # an empty Sequential passes its input through
        attended, _ = self.model.attend(features)
        return self.model.forward_tokens(map_to_tokens(attended))


def frozen_modules(model: nn.Module, tail: int = 0) -> nn.Sequential:
    """The backbone's modules before its last `tail` (the same module objects, not copies)."""
    n = len(model.backbone)
    if not 0 <= tail < n:
        raise UserError(f"trainable_backbone_tail must be between 0 and {n - 1}: the {model.config.backbone} backbone "
                        f"has {n} modules")
    return model.backbone[:n - tail]


def freeze(model: nn.Module, tail: int = 0) -> AfterBackbone:
    for p in frozen_modules(model, tail).parameters():
        p.requires_grad_(False)
    return AfterBackbone(model, tail)


FEATURE_PRECISIONS = {"bfloat16": {"autocast": "bfloat16", "stored": "float16"},
                      "float32": {"autocast": "none", "stored": "float32"}}
# as checkpoints written before feature_precision existed describe their features
FEATURE_DESCRIPTIONS = {"bfloat16": "bfloat16 autocast, stored as float16", "float32": "float32, stored as float32"}


def backbone_digest(frozen: nn.Module) -> str:
    """sha256 of the frozen modules' weights and buffers (their names say how many there are): part of the cache
    key, so other weights or another cut get other features."""
    h = hashlib.sha256()
    for name, tensor in sorted(frozen.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def _key(digest: str, fingerprint: str, preprocessing, mirrored: bool, precision: str = "bfloat16") -> str:
    """Same frozen weights, same images, same preprocessing, same side, same precision -> same cached features."""
    h = hashlib.sha256(digest.encode())
    h.update(fingerprint.encode())
    h.update(json.dumps(preprocessing.to_dict(), sort_keys=True).encode())
    if mirrored:  # only then, so the keys of unmirrored caches written before hflip existed stay valid
        h.update(b"mirrored")
    if precision != "bfloat16":  # likewise for the caches written before float32 features existed
        h.update(precision.encode())
    return h.hexdigest()[:20]


@torch.inference_mode()
def compute_features(frozen: nn.Module, images: torch.Tensor, preprocessing, device: torch.device,
                     batch_size: int = 128, label: str = "", mirrored: bool = False,
                     precision: str = "bfloat16") -> torch.Tensor:
    """(N, C, h, w): the frozen modules' output for uint8 images (N, H, W) or (N, C, H, W), or for their mirror
    images; computed under bfloat16 autocast and stored as float16, or computed and stored in float32."""
    from tqdm import tqdm

    from fer_explain.transforms import eval_transform

    frozen = frozen.to(device).eval()
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"backbone features {label}", unit="batch",
                      disable=not sys.stderr.isatty(), file=sys.stderr):
        x = eval_transform(images[start:start + batch_size].to(device), preprocessing)
        if mirrored:  # resizing and normalising commute with the flip: as train_transform's flip, after them
            x = x.flip(-1)
        x = x.contiguous(memory_format=torch.channels_last)
        if precision == "float32":
            chunks.append(frozen(x).float().cpu())
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                chunks.append(frozen(x).to(torch.float16).cpu())
    return torch.cat(chunks)


def cached_features(cache_dir: Path, frozen: nn.Module, digest: str, images: torch.Tensor, fingerprint: str,
                    preprocessing, device: torch.device, label: str, mirrored: bool = False,
                    precision: str = "bfloat16") -> torch.Tensor:
    """The features from CACHE_DIR/<key>.safetensors, computed and written (atomically) when absent; `digest` is
    `backbone_digest(frozen)`, computed once by the caller for every split."""
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / f"{_key(digest, fingerprint, preprocessing, mirrored, precision)}.safetensors"
    if path.is_file():
        return load_file(str(path))["features"]
    start = time.perf_counter()
    features = compute_features(frozen, images, preprocessing, device, label=label, mirrored=mirrored,
                                precision=precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({"features": features.contiguous()}, str(partial),
              metadata={"split": label, "n": str(len(images)), "data_fingerprint": fingerprint,
                        "frozen_modules": str(len(frozen)), "mirrored": str(mirrored),
                        **FEATURE_PRECISIONS[precision]})
    partial.replace(path)  # a run killed while writing leaves no half file under the final name
    print(f"cached {label} features of the frozen backbone modules {tuple(features.shape)} in "
          f"{time.perf_counter() - start:.0f} s -> {path}", file=sys.stderr)
    return features


def batch_features(data: dict, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The cached features of the faces `idx` as float32; with mirrored features cached (hflip), each face's mirror
    image replaces it with probability 1/2, as train_transform's flip does."""
    x = data["features"][idx].float()
    if "mirrored_features" in data:
        mirror = torch.rand(len(idx), generator=generator, device=x.device) < 0.5
        x = torch.where(mirror[:, None, None, None], data["mirrored_features"][idx].float(), x)
    return x


@torch.inference_mode()
def predict_from_features(trainable: AfterBackbone, features: torch.Tensor, device: torch.device,
                          batch_size: int = 512):
    """Softmax probabilities (N, K) as a numpy array, for cached features."""
    trainable.eval()
    probs = [trainable(features[i:i + batch_size].to(device).float()).float().softmax(-1).cpu()
             for i in range(0, len(features), batch_size)]
    return torch.cat(probs).numpy()


def prepare_training(model: nn.Module, data: dict, val_set, preprocessing, data_info: dict, feature_cache: str,
                     recipe: dict, dist_):
    """For training.train: the images in `data` replaced by cached features (and their mirror images' with hflip),
    the trainable part, the validation features and labels; `data_info` (stored in the checkpoint) says how the
    features were made."""
    if dist_.world > 1:
        raise UserError("freeze_backbone runs in one process: start it with python, not torchrun")
    tail = recipe["trainable_backbone_tail"]
    frozen = frozen_modules(model, tail)
    digest = backbone_digest(frozen)
    train_images, train_fingerprint = data.pop("images"), data_info["train"]["fingerprint"]

    def cache(images, fingerprint, label, mirrored=False):
        return cached_features(feature_cache, frozen, digest, images, fingerprint, preprocessing, dist_.device, label,
                               mirrored, recipe["feature_precision"])
    data["features"] = cache(train_images, train_fingerprint, "train").to(dist_.device)
    if recipe["hflip"]:
        data["mirrored_features"] = cache(train_images, train_fingerprint, "train mirrored", True).to(dist_.device)
    val = {"labels": val_set.labels.cpu().numpy(),
           "features": cache(val_set.images, data_info["val"]["fingerprint"], "val")}
    data_info["frozen_backbone"] = {"feature_cache": str(Path(feature_cache).resolve()),
                                    "frozen_modules": len(frozen), "trainable_tail": tail, "mirrored": recipe["hflip"],
                                    "features": FEATURE_DESCRIPTIONS[recipe["feature_precision"]]}
    return freeze(model, tail), val
