"""Resumable training state without pickles: RUN_DIR/resume.safetensors (+ a readable resume.json twin).

Tensors (model weights, the optimizer's per-parameter state, EMA weights) are flattened into one safetensors file;
everything else (epoch, best score, patience counter, seeds, optimizer hyper-parameters, LR-scheduler and
grad-scaler state) is plain JSON in that file's header. One atomic file replace per epoch means a crash leaves either
the previous epoch's state or the new one, never a mix. `resume.json` is written after it, for people to read.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fer_explain.errors import UserError

STATE_FILE = "resume.safetensors"
META_KEY = "resume_state"


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain_state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entry in meta["plain_state"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_resume(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: torch.nn.Module | None,
                scheduler, scaler, state: dict) -> None:
    """Write the state after a finished epoch; `state` is plain JSON-able data (epoch, best score, seeds, ...)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {**state, "optimizer": optim_meta, "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}
    text = json.dumps(meta, indent=2)
    tmp = run_dir / (STATE_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: text})
    tmp.replace(run_dir / STATE_FILE)
    json_tmp = run_dir / "resume.json.tmp"
    json_tmp.write_text(text + "\n")
    json_tmp.replace(run_dir / "resume.json")


def read_resume_state(run_dir: Path) -> dict | None:
    """The plain part of the saved state, or None when RUN_DIR holds no resumable run."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})[META_KEY])
    except Exception as e:  # truncated by a full disk, or not ours: say so instead of a trace
        raise UserError(f"{path} is unreadable ({type(e).__name__}); delete it to start this run afresh") from None


def restore(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: torch.nn.Module | None,
            scheduler, scaler) -> dict:
    """Load the saved tensors and states into the freshly built objects; returns the plain state.

    Tensors are read to the CPU: the load_state_dict calls copy them to where the model lives, except Adam's `step`
    counters, which torch keeps where they are loaded. On the CPU, as in a fresh run, they cost nothing; on the GPU,
    Adam would read each one back with .item(), two stream synchronisations per parameter per step."""
    state = read_resume_state(run_dir)
    tensors = load_file(str(run_dir / STATE_FILE))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    if ema is not None:
        ema.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # empty when the scaler is disabled (bf16 or CPU)
        scaler.load_state_dict(state["scaler"])
    return state
