"""What a training run keeps in RUN_DIR, and how a rerun of the same command picks it up.

    log.jsonl            one JSON line per finished epoch
    model.safetensors    the best epoch's weights (+ model.json), rewritten with the final summary at the end
                         and a temperature fitted on val (fer_explain.calibrate_cli)
    resume.safetensors   the last finished epoch's full state (training.resume), + resume.json to read
    curves.png           loss and accuracy per epoch

Only rank 0 writes. A rerun with other settings than the saved run's (other than a larger epoch budget or
patience) is refused, so one folder never mixes two recipes.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from fer_explain.errors import UserError
from training import resume

LOG = "log.jsonl"
MODEL = "model.safetensors"
# recipe keys that may change between a run and its continuation
EXTENDABLE = ("epochs", "patience", "eval_batch_size")


def settings_of(args, recipe: dict) -> dict:
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {"arguments": arguments, "recipe": recipe,
            "identity": {"seed": args.seed, "data": str(Path(args.data).resolve()), "limit_train": args.limit_train,
                         **{k: v for k, v in recipe.items() if k not in EXTENDABLE}}}


def check_compatible(run_dir: Path, settings: dict) -> dict | None:
    """The saved state when RUN_DIR holds a run of the same settings, None when it holds none; else UserError."""
    saved = resume.read_resume_state(run_dir)
    if saved is None:
        return None
    old, new = saved["settings"]["identity"], settings["identity"]
    differing = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                 if old.get(k) != new.get(k)]
    if differing:
        raise UserError(f"{run_dir} holds a run with other settings ({'; '.join(differing[:3])}); "
                        "use another --out or delete that folder")
    return saved


def read_log(run_dir: Path, up_to_epoch: int | None = None) -> list[dict]:
    path = run_dir / LOG
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if up_to_epoch is None or r["epoch"] <= up_to_epoch]


def append_log(run_dir: Path, row: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOG, "a") as f:
        f.write(json.dumps(row) + "\n")


def save(run_dir: Path, model, optimizer, ema, scheduler, scaler, state: dict) -> None:
    resume.save_resume(run_dir, model, optimizer, ema, scheduler, scaler, state)


def restore(run_dir: Path, model, optimizer, ema, scheduler, scaler, dist_) -> dict:
    state = resume.restore(run_dir, model, optimizer, ema, scheduler, scaler)
    if dist_.is_main:  # drop log lines of an epoch that crashed before its state was saved
        rows = read_log(run_dir, state["epoch"])
        (run_dir / LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return state


def _git_commit() -> str | None:
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def checkpoint_extra(state: dict, log: list[dict]) -> dict:
    """The checkpoint's metadata beyond the model: best validation metrics, the run's settings, data, commit."""
    seconds = [r["epoch_seconds"] for r in log]
    rates = [r["images_per_s"] for r in log]
    training = {**state["settings"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
                "early_stopped": state["early_stopped"], "time_limited": state.get("time_limited", False),
                "wall_time_s": sum(seconds),
                "mean_images_per_s": sum(rates) / len(rates) if rates else None, "rng": state["rng"],
                "world_size": state.get("world_size", 1), "device": state.get("device"),
                "device_name": torch.cuda.get_device_name() if str(state.get("device", "")).startswith("cuda")
                else "cpu",
                "torch": torch.__version__, "python": platform.python_version()}
    training.pop("identity", None)
    return {"validation": state["best_validation"], "training": training, "data": state["data"],
            "git_commit": _git_commit()}


def save_best(run_dir: Path, model, preprocessing, state: dict) -> None:
    from fer_explain.checkpoint import save_checkpoint
    save_checkpoint(run_dir / MODEL, model, preprocessing, checkpoint_extra(state, read_log(run_dir)))


def _finalized(run_dir: Path, state: dict) -> bool:
    try:
        training = json.loads((run_dir / "model.json").read_text())["training"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(training.get("finalized")) and training.get("epochs_run") == state["epoch"] \
        and (run_dir / "curves.png").is_file()


def is_calibrated(run_dir: Path) -> bool:
    try:
        return "calibration" in json.loads((run_dir / "model.json").read_text())
    except (OSError, ValueError):
        return False


def finalize(run_dir: Path, state: dict, dist_, calibration_split=None):
    """Rewrite the best checkpoint with the whole run's summary and draw the curves; the run's result.

    With `calibration_split` (the val FaceDataset) the checkpoint also records a temperature fitted on it, exactly as
    `python -m fer_explain calibrate` would, so that the app shows the run's probabilities calibrated."""
    from training.train import TrainingResult

    log = read_log(run_dir, state["epoch"])
    if dist_.is_main and not _finalized(run_dir, state):  # a rerun of a finished run keeps its files as they are
        from fer_explain.checkpoint import load_checkpoint, save_checkpoint
        from training.curves import plot_curves
        best = load_checkpoint(run_dir / MODEL)  # the best epoch's weights, wherever the run ended
        extra = checkpoint_extra(state, log)
        extra["training"]["finalized"] = True
        plot_curves(run_dir / LOG, run_dir / "curves.png", best_epoch=state["best_epoch"])
        save_checkpoint(run_dir / MODEL, best.model, best.preprocessing, extra)
        if calibration_split is not None:
            _calibrate(run_dir / MODEL, calibration_split, dist_.device, state["settings"]["recipe"]["eval_batch_size"])
    if dist_.world > 1:
        torch.distributed.barrier()
    return TrainingResult(run_dir, state["best_epoch"], state["best_validation"], state["early_stopped"], log)


def _calibrate(path: Path, val, device, batch_size: int) -> None:
    import sys

    from fer_explain.calibrate_cli import calibrate_checkpoint
    from fer_explain.checkpoint import load_checkpoint

    # a fresh copy: preparing a model for inference folds its BatchNorm in place
    _, c = calibrate_checkpoint(load_checkpoint(path, device), val, "val", device, batch_size,
                                progress=sys.stderr.isatty())
    print(f"calibrated on val ({c['images']} images): T = {c['temperature']:.3g}, ECE "
          f"{100 * c['as_trained']['ece']:.2f} -> {100 * c['calibrated']['ece']:.2f} %", file=sys.stderr)
