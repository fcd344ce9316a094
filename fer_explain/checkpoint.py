"""Checkpoints: weights in safetensors, everything else (model config, classes, preprocessing, metrics, training
arguments, data fingerprint, git commit) as JSON, both in the safetensors header and in a readable `.json` beside it.

A checkpoint is rebuilt from the `.safetensors` file alone; no pickles are read. A path may name the file, a run
directory holding `model.safetensors`, or `hf://owner/repo/path/file.safetensors` on the Hugging Face Hub.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fer_explain.config import ModelConfig, Preprocessing
from fer_explain.errors import UserError
from fer_explain.model import EmotionNet, build_model

FORMAT = "fer-explain/1"
META_KEY = "fer_explain"


@dataclass
class Checkpoint:
    model: EmotionNet
    config: ModelConfig
    preprocessing: Preprocessing
    metadata: dict
    path: Path


def resolve_checkpoint_path(spec: str | Path) -> Path:
    """Local file for a checkpoint spec; `hf://owner/repo/file` goes through huggingface_hub and its cache."""
    spec = str(spec)
    if spec.startswith("hf://"):
        parts = spec[len("hf://"):].split("/")
        if len(parts) < 3:
            raise UserError(f"a Hub checkpoint is hf://owner/repo/path/to/file.safetensors, not {spec}")
        from huggingface_hub import hf_hub_download
        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
        except Exception as e:  # offline, unknown repo, missing file: all one message with the cause
            raise UserError(f"cannot fetch {spec} from the Hugging Face Hub ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'no detail'}); check the network "
                            "or pass a local checkpoint") from None
    path = Path(spec)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        raise UserError(f"checkpoints are .safetensors files; got {path.name}")
    return path


def save_checkpoint(path: str | Path, model: EmotionNet, preprocessing: Preprocessing, extra: dict | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write `path` (.safetensors) and its `.json` twin. `dtype=torch.float16` halves the file size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model_config": model.config.to_dict(), "classes": list(model.config.classes),
            "preprocessing": preprocessing.to_dict(), **(extra or {})}
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        state[k] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
    return _write(path, state, meta)


def _write(path: Path, state: dict, meta: dict) -> Path:
    text = json.dumps(meta, indent=2, default=str)
    tmp = path.with_suffix(".safetensors.tmp")  # a crash mid-write never leaves a truncated checkpoint behind
    save_file(state, str(tmp), metadata={META_KEY: text})
    tmp.replace(path)
    path.with_suffix(".json").write_text(text + "\n")
    return path


def rewrite_metadata(path: str | Path, metadata: dict, out: str | Path | None = None) -> Path:
    """The checkpoint's weights, byte for byte in their stored dtype, under new `metadata`, written to `out`
    (default: in place, atomically) with its `.json` twin."""
    from safetensors.torch import load_file

    path = resolve_checkpoint_path(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"metadata of format {metadata.get('format')!r}, expected {FORMAT}")
    out = Path(out) if out is not None else path
    out.parent.mkdir(parents=True, exist_ok=True)
    return _write(out, load_file(str(path)), metadata)


def read_metadata(path: str | Path) -> dict:
    path = resolve_checkpoint_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:
        raise UserError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt?): {e}") from None
    if META_KEY not in header:
        raise UserError(f"{path} is a safetensors file but not a fer-explain checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: unsupported checkpoint format {meta.get('format')!r}; expected {FORMAT}")
    return meta


def load_checkpoint(spec: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from the checkpoint alone, in eval mode, float32, on `device`."""
    path = resolve_checkpoint_path(spec)
    meta = read_metadata(path)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: model config or preprocessing is invalid ({e})") from None
    if list(config.classes) != list(meta.get("classes", config.classes)):
        raise UserError(f"{path}: config classes {list(config.classes)} do not match the stored classes "
                        f"{meta['classes']}")
    try:
        model = build_model(config)
    except ValueError as e:  # e.g. a backbone this version does not know
        raise UserError(f"{path}: cannot build the model its config describes ({e})") from None
    try:
        from safetensors.torch import load_file
        state = load_file(str(path))
    except Exception as e:
        raise UserError(f"{path}: cannot read the weights (truncated or corrupt?): {e}") from None
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    wrong = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise UserError(f"{path}: weights do not match its config ({len(missing)} missing, {len(unexpected)} "
                        f"unexpected, {len(wrong)} of the wrong shape, e.g. "
                        f"{sorted(missing | unexpected | set(wrong))[:3]})")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return Checkpoint(model.to(device).eval(), config, preprocessing, meta, path)
