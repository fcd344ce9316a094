"""Training throughput probe: images/s of the real epoch loop (training.train.train_one_epoch: augmentation on the
device, autocast, optimizer step) on random 48x48 faces, per batch size, after a warm-up epoch.

    python -m training.throughput --backbone resnet50 --batch-sizes 32 128 256 --device cuda [--compile] \
        [--json results/probes/h100_resnet50.json]

Each figure is the median of --repeats timed epochs of --images images. It measures the model and loop, not the
data: a real run adds the per-epoch validation, which training_runs.md counts separately.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from fer_explain.errors import UserError, run_command
from training.recipe import CHOICES, load_recipe

REPO = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "training/configs/paper.yaml"))
    p.add_argument("--backbone", default="resnet50", choices=CHOICES["backbone"])
    p.add_argument("--variant", default="full", choices=CHOICES["variant"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    p.add_argument("--images", type=int, default=4096, help="images per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--compile", action="store_true", help="torch.compile the model first (as train --compile)")
    p.add_argument("--json", type=Path)
    return p


def measure(recipe: dict, batch_size: int, images: int, repeats: int, device, compile_model: bool) -> dict:
    from fer_explain.config import Preprocessing
    from fer_explain.losses import class_weights
    from training.distributed import Dist
    from training.optimizer import make_optimizer
    from training.train import make_model, train_one_epoch

    recipe = {**recipe, "batch_size": batch_size, "epochs": repeats + 1}
    if device.type == "cuda":  # this batch size's peak, not the largest of the batch sizes measured before it
        torch.cuda.reset_peak_memory_stats(device)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 8, (images,), generator=g)
    data = {"images": torch.randint(0, 256, (images, 1, 48, 48), dtype=torch.uint8, generator=g).to(device),
            "labels": labels.to(device), "soft_labels": None, "class_counts": torch.bincount(labels, minlength=8)}
    torch.manual_seed(0)
    model = make_model(recipe, device)
    optimizer, _ = make_optimizer(recipe, model)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and recipe["amp"] == "fp16")
    train_model = torch.compile(model) if compile_model else model
    weight = class_weights(data["class_counts"].tolist()).to(device) if recipe["class_weighting"] else None
    rates = []
    for epoch in range(repeats + 1):  # epoch 0 warms up cuDNN autotuning, compilation and the allocator
        stats = train_one_epoch(train_model, model, optimizer, scaler, None, data, recipe,
                                Preprocessing(grayscale=True, source_size=48), epoch, 0, Dist(0, 1, device), weight)
        if epoch:
            rates.append(stats["images_per_s"])
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"batch_size": batch_size, "images_per_s": statistics.median(rates), "all_images_per_s": rates,
            "peak_memory_mb": peak}


def main(args: argparse.Namespace) -> dict:
    from fer_explain.device import pick_device

    if min(args.batch_sizes) < 1 or args.images < max(args.batch_sizes) or args.repeats < 1:
        raise UserError("batch sizes must be >= 1, --images at least the largest batch, --repeats >= 1")
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    recipe = load_recipe(args.config, {"backbone": args.backbone, "variant": args.variant})
    amp = recipe["amp"] if device.type == "cuda" else "none"
    result = {"backbone": args.backbone, "variant": args.variant, "recipe": recipe["name"], "amp": amp,
              "compile": args.compile, "images": args.images, "repeats": args.repeats,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "rows": []}
    for batch in args.batch_sizes:
        row = measure(recipe, batch, args.images, args.repeats, device, args.compile)
        result["rows"].append(row)
        print(f"{args.backbone} {args.variant} batch {batch:>4}: {row['images_per_s']:8.0f} images/s "
              f"({result['device']}, {amp}{', compiled' if args.compile else ''})", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return result


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def run() -> None:  # the figures are printed (and written with --json); the exit code is 0
        main(args)

    return run_command(run)


if __name__ == "__main__":
    sys.exit(cli())
