"""Speed of `python -m fer_explain evaluate`: a whole data split through the same code (`evaluation_record`), timed
after the data are loaded and one warm-up batch, median over --runs passes.

    python benchmarks/evaluate_speed.py --data ../shared/data/ferplus [--split test] [--backbone resnet50]
        [--checkpoint C] [--device cpu] [--batch-size N] [--runs 3] [--json results/bench/FILE.json]

Without --checkpoint a random-init model of --backbone is written to a temporary folder: speed does not depend on the
weights. Only timings are written (a random model's metrics say nothing, and no per-image prediction is kept).
Goal: the 3,137 FER+ test images with resnet50 in under 4 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--data-format", default="auto")
    p.add_argument("--backbone", default="resnet50", help="random-init model when no --checkpoint is given")
    p.add_argument("--checkpoint", help="time this checkpoint instead")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--batch-size", type=int, help="default: evaluate's (256 on CUDA, 32 on CPU)")
    p.add_argument("--runs", type=int, default=3, help="timed passes over the split")
    p.add_argument("--json", help="also write the timings to this JSON file")
    return p


def measure(args, tmp: Path) -> dict:
    import torch

    from fer_explain.bench import random_checkpoint_file
    from fer_explain.device import pick_device
    from fer_explain.evaluate import (default_batch_size, evaluation_record, load_classifier, load_evaluation_split,
                                      predict_probabilities)

    device = pick_device(args.device)
    batch_size = args.batch_size or default_batch_size(device)
    dataset = load_evaluation_split(args.data, args.split, args.data_format)  # before minutes of model building
    ckpt = load_classifier(args.checkpoint or random_checkpoint_file(args.backbone, "full", tmp), device)
    load_before = os.getloadavg()[0]
    warm = SimpleNamespace(images=dataset.images[:batch_size])  # first-call costs (allocator, oneDNN/cuDNN plans)
    predict_probabilities(ckpt.model, warm, ckpt.preprocessing, device, batch_size, progress=False)
    seconds = []
    for run in range(args.runs):
        record = evaluation_record(ckpt, dataset, device, batch_size, False, args.data, args.split)
        seconds.append(record["seconds"])
        print(f"run {run + 1}/{args.runs}: {len(dataset)} images in {record['seconds']:.1f} s "
              f"({record['images_per_s']:.1f} images/s)")
    median = statistics.median(seconds)
    return {"evaluate_s": seconds, "median_s": median, "images_per_s": len(dataset) / median, "n": len(dataset),
            "split": args.split, "data_source": dataset.source, "batch_size": batch_size,
            "checkpoint": Path(args.checkpoint).name if args.checkpoint else None, "random_init": not args.checkpoint,
            "model": ckpt.config.backbone, "variant": ckpt.config.variant, "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = get_args_parser()
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    from fer_explain.errors import run_command
    from fer_explain.output_paths import check_output_file

    def run() -> int:
        check_output_file(args.json, "--json")  # before minutes of timing, not after
        tmp = Path(tempfile.mkdtemp(prefix="fer_evaluate_bench_"))
        try:
            result = measure(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a random-init resnet50 is ~120 MB
        print(f"median {result['median_s']:.1f} s over {args.runs} runs ({result['images_per_s']:.1f} images/s)")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
