"""Trains the emotion network and keeps the epoch that is best on validation (torchvision-reference shape).

    python -m training.train --config training/configs/paper.yaml --data DIR --out RUN_DIR [overrides]
    torchrun --nproc_per_node 4 -m training.train ...        # same command, data-parallel

The whole uint8 train/val split lives on the device; each epoch draws a seeded permutation and augments batches
there (fer_explain.transforms.train_transform), so no DataLoader workers are needed. Every random draw of epoch e
comes from generators seeded with (seed, e, rank), so a resumed run continues exactly as an uninterrupted one would.
Writes RUN_DIR/model.safetensors + model.json (best epoch, its probabilities calibrated on val unless
--no-calibrate), log.jsonl, curves.png and resume.safetensors/.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fer_explain.errors import UserError, run_command
from training.distributed import Dist, all_reduce_sum, any_rank, setup_distributed
from training.optimizer import make_optimizer
from training.recipe import CHOICES, load_recipe

SCORE_KEYS = {"val_accuracy": "accuracy", "val_mean_class_accuracy": "mean_class_accuracy",
              "val_macro_f1": "macro_f1", "val_loss": "loss"}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    p.add_argument("--config", required=True, help="recipe YAML (training/configs/*.yaml)")
    p.add_argument("--data", required=True, help="dataset folder (FER+ npz, FERPlus, RAF-DB or image folders)")
    p.add_argument("--out", required=True, help="run folder; rerunning the same command resumes it")
    p.add_argument("--backbone", choices=CHOICES["backbone"])
    p.add_argument("--variant", choices=CHOICES["variant"])
    p.add_argument("--channel-attention", choices=CHOICES["channel_attention"])
    p.add_argument("--spatial-attention", choices=CHOICES["spatial_attention"])
    p.add_argument("--no-class-weighting", action="store_true", help="plain cross-entropy (ablation)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--limit-train", type=int, help="train on a seeded random subset of this many images")
    p.add_argument("--data-format", help="dataset layout; default: the recipe's (auto-detected)")
    p.add_argument("--backbone-weights", help="torchvision-layout backbone state dict (e.g. ImageNet ResNet50)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training model")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop after the last epoch that fits in this many seconds (the run stays resumable)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="keep the probabilities as trained (by default the best checkpoint records a temperature "
                        "fitted on val, as `python -m fer_explain calibrate` does)")
    p.add_argument("--feature-cache", default="runs/feature_cache", metavar="DIR",
                   help="where a freeze_backbone recipe keeps the backbone's features (training/frozen_backbone.py)")
    return p


@dataclass
class TrainingResult:
    run_dir: Path
    best_epoch: int
    best_validation: dict
    early_stopped: bool
    log: list[dict]


def make_model(recipe: dict, device: torch.device):
    from fer_explain.config import ModelConfig
    from fer_explain.model import build_model
    config = ModelConfig(backbone=recipe["backbone"], variant=recipe["variant"],
                         channel_attention=recipe["channel_attention"], spatial_attention=recipe["spatial_attention"])
    # channels_last everywhere (also on CPU) so weights keep one layout across evaluation and resumes
    return build_model(config, recipe["backbone_weights"]).to(device, memory_format=torch.channels_last)


def train_one_epoch(model, raw_model, optimizer, scaler, ema, data: dict, recipe: dict, preprocessing, epoch: int,
                    seed: int, dist_: Dist, class_weight) -> dict:
    from tqdm import tqdm

    from fer_explain.losses import cross_entropy
    from fer_explain.transforms import train_transform
    from training.frozen_backbone import batch_features

    device, bs = dist_.device, recipe["batch_size"]
    torch.manual_seed(seed * 100_003 + epoch * 1_009 + dist_.rank)  # dropout draws
    order = torch.randperm(len(data["labels"]), generator=torch.Generator().manual_seed(seed * 7_919 + epoch))
    order = order[: len(order) // dist_.world * dist_.world][dist_.rank::dist_.world].to(device)  # this rank's shard
    augment = torch.Generator(device=device).manual_seed(seed * 104_729 + epoch * 31 + dist_.rank)
    amp = device.type == "cuda" and recipe["amp"] != "none"
    amp_dtype = torch.float16 if recipe["amp"] == "fp16" else torch.bfloat16
    model.train()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    start = time.perf_counter()
    bar = tqdm(range(0, len(order), bs), desc=f"epoch {epoch + 1}/{recipe['epochs']}", unit="batch",
               disable=not (dist_.is_main and sys.stderr.isatty()), file=sys.stderr, dynamic_ncols=True)
    for step, begin in enumerate(bar):
        idx = order[begin:begin + bs]
        if "features" in data:  # frozen backbone: the cached output of its frozen modules is the input
            x = batch_features(data, idx, augment)
        else:
            x = train_transform(data["images"][idx], preprocessing, max_degrees=recipe["rotation_degrees"],
                                flip=recipe["hflip"], generator=augment).contiguous(memory_format=torch.channels_last)
        labels = data["labels"][idx]
        targets = data["soft_labels"][idx] if recipe["soft_labels"] else labels
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            logits = model(x)
        loss = cross_entropy(logits, targets, class_weight, recipe["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if recipe["grad_clip"] > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), recipe["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update_parameters(raw_model)
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(idx)
        if step % 10 == 0 or begin + bs >= len(order):  # .item() syncs the GPU: only now and then
            rate = seen / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}",
                            img_s=f"{rate * dist_.world:.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    loss_total, correct_total, seen_total = all_reduce_sum([loss_sum.item(), correct.item(), seen], dist_)
    return {"train_loss": loss_total / seen_total, "train_accuracy": correct_total / seen_total,
            "images_per_s": seen_total / seconds, "train_seconds": seconds}


def evaluate(model, dataset, preprocessing, dist_: Dist, recipe: dict) -> dict:
    """compute_metrics on the whole split (each rank predicts its shard) plus the unweighted NLL as `loss`.

    Not under inference_mode as a whole: predict_probabilities runs only the forward passes in it. Its
    `model.to(...)` re-flattens the cuDNN LSTM weights in place, which must not happen in inference mode on a model
    that goes on training."""
    from fer_explain.evaluate import predict_probabilities

    if isinstance(dataset, dict):  # frozen backbone: cached validation features, one process
        from training.frozen_backbone import predict_from_features
        return _metrics(predict_from_features(model, dataset["features"], dist_.device), dataset["labels"])
    shard = dataset if dist_.world == 1 else dataset.subset(torch.arange(dist_.rank, len(dataset), dist_.world))
    probs = predict_probabilities(model, shard, preprocessing, dist_.device, batch_size=recipe["eval_batch_size"],
                                  flip_tta=recipe["flip_tta"],
                                  progress=dist_.is_main and sys.stderr.isatty())
    labels = shard.labels.cpu().numpy()
    if dist_.world > 1:
        gathered = [None] * dist_.world
        torch.distributed.all_gather_object(gathered, (probs, labels))
        probs, labels = np.concatenate([g[0] for g in gathered]), np.concatenate([g[1] for g in gathered])
    return _metrics(probs, labels)


def _metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    from fer_explain.metrics import compute_metrics

    metrics = compute_metrics(labels, probs.argmax(1))
    metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return metrics


def main(args: argparse.Namespace) -> TrainingResult:
    from training import run_folder
    from training.train_data import load_data

    started = time.perf_counter()
    recipe = load_recipe(args.config, vars(args))
    if args.time_limit is not None and args.time_limit <= 0:
        raise UserError(f"--time-limit must be a positive number of seconds, not {args.time_limit}")
    dist_ = setup_distributed(args.device)
    run_dir = Path(args.out)
    settings = run_folder.settings_of(args, recipe)
    saved = run_folder.check_compatible(run_dir, settings)
    if saved is not None and (saved["early_stopped"] or saved["epoch"] >= recipe["epochs"]):
        if dist_.is_main:
            print(f"{run_dir}: already finished (epoch {saved['epoch']}, best epoch {saved['best_epoch']})",
                  file=sys.stderr)
            # finished with --no-calibrate, by an older version, or stopped between its last epoch and the end
            if not args.no_calibrate and not run_folder.is_calibrated(run_dir):
                print(f"note: its probabilities are as trained; `python -m fer_explain calibrate --checkpoint "
                      f"{run_dir} --data {args.data}` fits their temperature on val", file=sys.stderr)
        return run_folder.finalize(run_dir, saved, dist_)
    data, val_set, preprocessing, data_info = load_data(args, recipe, dist_)
    torch.manual_seed(args.seed)  # the same initial weights on every rank and every rerun
    if dist_.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = make_model(recipe, dist_.device)
    train_target, eval_data = model, val_set  # what the epoch loop trains and what evaluate reads
    if recipe["freeze_backbone"]:
        from training.frozen_backbone import prepare_training
        train_target, eval_data = prepare_training(model, data, val_set, preprocessing, data_info, args.feature_cache,
                                                   recipe, dist_)
    ema = None
    if recipe["ema"] > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe["ema"]), use_buffers=True)
    optimizer, scheduler = make_optimizer(recipe, model)
    scaler = torch.amp.GradScaler(dist_.device.type, enabled=dist_.device.type == "cuda" and recipe["amp"] == "fp16")
    state = {"epoch": 0, "best_epoch": 0, "best_score": None, "bad_epochs": 0, "early_stopped": False,
             "best_validation": None, "settings": settings, "data": data_info,
             "rng": {"seed": args.seed, "rule": "each epoch e reseeds torch, the permutation and augmentation "
                                                 "generators from (seed, e, rank)"},
             "world_size": dist_.world, "device": str(dist_.device)}
    if saved is not None:
        state = run_folder.restore(run_dir, model, optimizer, ema, scheduler, scaler, dist_)
        state.update(settings=settings, world_size=dist_.world, device=str(dist_.device))  # this invocation's
        for split in ("train", "val"):
            if state["data"][split]["fingerprint"] != data_info[split]["fingerprint"]:
                raise UserError(f"the {split} data in {args.data} changed since {run_dir} was started "
                                "(other fingerprint); use another --out")
        if dist_.is_main:
            print(f"{run_dir}: resuming after epoch {state['epoch']} (best epoch {state['best_epoch']})",
                  file=sys.stderr)
    train_model = train_target
    if dist_.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(model, device_ids=[dist_.device.index] if dist_.device.index is not None
                                              else None)
    if args.compile:
        train_model = torch.compile(train_model)
    class_weight = None
    if recipe["class_weighting"]:
        from fer_explain.losses import class_weights
        class_weight = class_weights(data["class_counts"]).to(dist_.device)
    eval_model = ema.module if ema is not None else model
    eval_target = ema.module if ema is not None else train_target
    sign = -1 if recipe["select_metric"] == "val_loss" else 1
    for epoch in range(state["epoch"], recipe["epochs"]):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(train_model, train_target, optimizer, scaler, ema, data, recipe, preprocessing, epoch,
                                args.seed, dist_, class_weight)
        scheduler.step()
        val = evaluate(eval_target, eval_data, preprocessing, dist_, recipe)
        row = {"epoch": epoch + 1, "train_loss": stats["train_loss"], "train_accuracy": stats["train_accuracy"],
               "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "val_mean_class_accuracy": val["mean_class_accuracy"], "val_macro_f1": val["macro_f1"], "lr": lr,
               "images_per_s": stats["images_per_s"], "epoch_seconds": time.perf_counter() - start}
        score = sign * val[SCORE_KEYS[recipe["select_metric"]]]
        improved = state["best_score"] is None or score > state["best_score"]
        if improved:
            state.update(best_epoch=epoch + 1, best_score=score, bad_epochs=0, best_validation=val)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["early_stopped"] = 0 < recipe["patience"] <= state["bad_epochs"] and epoch + 1 < recipe["epochs"]
        # another epoch like this one would overrun the time limit: stop cleanly rather than be killed mid-epoch
        out_of_time = args.time_limit is not None and epoch + 1 < recipe["epochs"] and not state["early_stopped"] \
            and any_rank(time.perf_counter() - started + row["epoch_seconds"] > args.time_limit, dist_)
        state["time_limited"] = out_of_time
        if dist_.is_main:
            print(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | val loss "
                  f"{row['val_loss']:.4f} acc {row['val_accuracy']:.3f} macro-F1 {row['val_macro_f1']:.3f}"
                  f"{' (best)' if improved else ''} | {row['images_per_s']:.0f} img/s", file=sys.stderr)
            run_folder.append_log(run_dir, row)
            if improved:
                run_folder.save_best(run_dir, eval_model, preprocessing, state)
            run_folder.save(run_dir, model, optimizer, ema, scheduler, scaler, state)
        if state["early_stopped"]:
            if dist_.is_main:
                print(f"early stop: no better {recipe['select_metric']} for {state['bad_epochs']} epochs",
                      file=sys.stderr)
            break
        if out_of_time:
            if dist_.is_main:
                print(f"time limit: stopping after epoch {epoch + 1} of {recipe['epochs']} ({args.time_limit:.0f} s); "
                      "rerun the same command without the limit to continue", file=sys.stderr)
            break
    return run_folder.finalize(run_dir, state, dist_, calibration_split=None if args.no_calibrate else val_set)


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def run() -> int:
        result = main(args)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({"run_dir": str(result.run_dir), "best_epoch": result.best_epoch,
                              "val_accuracy": result.best_validation["accuracy"]}))
        return 0

    try:
        return run_command(run, "rerun the same command to resume")
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(cli())
