"""A training recipe: the YAML file's keys, their defaults and checks, and command-line overrides on top.

The YAML holds the recipe (optimizer, learning rate, schedule, regularisation, model variant); the command line
only overrides it. Unknown keys and bad values are `UserError`s naming the key, so a typo never trains silently
with a default.
"""
from __future__ import annotations

from pathlib import Path

from fer_explain.errors import UserError

# key -> default. Defaults are the paper's recipe; configs/paper.yaml spells them out.
DEFAULTS = {
    "name": "unnamed",
    "description": "",
    "backbone": "resnet50",
    "backbone_weights": None,  # torchvision-layout state dict file (ImageNet); None = random init
    "variant": "full",
    "channel_attention": "channel",
    "spatial_attention": "spatial",
    "class_weighting": True,
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "batch_size": 32,
    "eval_batch_size": 256,
    "epochs": 50,
    "patience": 10,  # early stopping: epochs without a better select_metric; 0 = off
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "label_smoothing": 0.0,
    "soft_labels": False,
    "ema": 0.0,  # decay of the weights' exponential moving average; 0 = off
    "grad_clip": 0.0,  # max global gradient norm; 0 = off
    "select_metric": "val_accuracy",
    "amp": "bf16",  # CUDA only; CPU always trains in float32
    "flip_tta": False,  # evaluation averages the prediction of the face and its mirror image
    "rotation_degrees": 15.0,
    "hflip": True,
    "data_format": "auto",
    "freeze_backbone": False,  # train only after the backbone, on its cached features (training/frozen_backbone.py)
    "trainable_backbone_tail": 0,  # with freeze_backbone: its last N modules are trained too, only those before cached
    # with freeze_backbone: how the cached features are computed. bfloat16 autocast is twice as fast on CPU, but the
    # trained part adapts to its rounding and inference runs in float32 (val accuracy -0.4 ± 0.6 pp, README)
    "feature_precision": "bfloat16",
}

CHOICES = {
    "backbone": ("resnet50", "mobilenet_v2", "resnet18"),
    "variant": ("full", "baseline"),
    "channel_attention": ("channel", "none"),
    "spatial_attention": ("spatial", "none"),
    "optimizer": ("adam", "adamw", "sgd"),
    "lr_schedule": ("constant", "cosine"),
    "select_metric": ("val_accuracy", "val_mean_class_accuracy", "val_macro_f1", "val_loss"),
    "amp": ("bf16", "fp16", "none"),
    "feature_precision": ("bfloat16", "float32"),
}

# recipe keys that the command line may override: argparse dest -> recipe key
OVERRIDES = {
    "backbone": "backbone", "variant": "variant", "channel_attention": "channel_attention",
    "spatial_attention": "spatial_attention", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
    "data_format": "data_format", "backbone_weights": "backbone_weights",
}


def _check(recipe: dict, source: str) -> dict:
    for key, value in recipe.items():
        default = DEFAULTS[key]
        if key in CHOICES and value not in CHOICES[key]:
            raise UserError(f"{source}: {key} must be one of {', '.join(CHOICES[key])}, not {value!r}")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"{source}: {key} must be true or false, not {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise UserError(f"{source}: {key} must be a non-negative number, not {value!r}")
            if isinstance(default, int) and value != int(value):
                raise UserError(f"{source}: {key} must be a whole number, not {value!r}")
            recipe[key] = type(default)(value)
    for key in ("batch_size", "eval_batch_size", "epochs"):
        if recipe[key] < 1:
            raise UserError(f"{source}: {key} must be at least 1")
    if not 0 <= recipe["ema"] < 1:
        raise UserError(f"{source}: ema is a decay in [0, 1), not {recipe['ema']}")
    if recipe["freeze_backbone"] and (recipe["rotation_degrees"] or recipe["flip_tta"] or recipe["ema"]):
        # hflip works: the mirrored images' features are cached too; a rotation would need one cache per angle
        raise UserError(f"{source}: freeze_backbone trains on cached features, which cannot be rotated, nor "
                        "averaged with their mirror image at evaluation, nor kept as an EMA model: set "
                        "rotation_degrees: 0, flip_tta: false and ema: 0")
    if recipe["trainable_backbone_tail"] and not recipe["freeze_backbone"]:
        raise UserError(f"{source}: trainable_backbone_tail only means something with freeze_backbone: true "
                        "(without it the whole backbone trains)")
    if not 0 <= recipe["label_smoothing"] < 1:
        raise UserError(f"{source}: label_smoothing must be in [0, 1), not {recipe['label_smoothing']}")
    return recipe


def load_recipe(path: str | Path, overrides: dict | None = None) -> dict:
    """DEFAULTS, updated by the YAML file, updated by the non-None `overrides` (argparse dests), checked."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} must be a mapping of recipe keys, got {type(loaded).__name__}")
    unknown = sorted(set(loaded) - set(DEFAULTS))
    if unknown:
        raise UserError(f"{path}: unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(DEFAULTS)}")
    recipe = {**DEFAULTS, **loaded}
    for dest, key in OVERRIDES.items():
        value = (overrides or {}).get(dest)
        if value is not None:
            recipe[key] = value
    if (overrides or {}).get("no_class_weighting"):
        recipe["class_weighting"] = False
    return _check(recipe, str(path))
