"""`python -m fer_explain bench`: per-face latency of prediction and of each explanation, and batch throughput.

Batch 1 (one face, the interactive case): median and 90th percentile over --runs timed calls after warm-up, for
`Predictor.predict`, each explanation alone, the three default explanations together, and the three together with
their faithfulness scores. Batch 64: faces per second of prediction (the folder/video case). Face detection is not
included (see benchmarks/face_detector.py). With --backbone instead of a checkpoint the model is random-init:
speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fer_explain.errors import UserError

THREE = ("spatial_attention", "token_saliency", "gradcam")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="model .safetensors, run dir or hf://owner/repo/file")
    parser.add_argument("--backbone", help="random-init model of this backbone instead of a checkpoint "
                                           "(resnet50, mobilenet_v2, resnet18)")
    parser.add_argument("--variant", default="full", choices=("full", "baseline"), help="with --backbone")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="prediction precision: auto = bf16 autocast on CUDA, float32 on CPU")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per batch-1 measurement (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the throughput measurement")
    parser.add_argument("--methods", nargs="+", default=list(THREE), metavar="METHOD",
                        help="explanations timed one by one (default: the three of the app)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this JSON file")


def random_checkpoint(backbone: str, variant: str):
    """A random-init model as a Checkpoint (speed does not depend on the weights); a bad name is a UserError."""
    from fer_explain.checkpoint import Checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model
    try:
        config = ModelConfig(backbone=backbone, variant=variant)
        model = build_model(config).eval()
    except ValueError as e:
        raise UserError(str(e)) from None
    return Checkpoint(model, config, Preprocessing(), {"random_init": True}, Path(f"<random-init {backbone}>"))


def random_checkpoint_file(backbone: str, variant: str, folder: Path, extra: dict | None = None) -> Path:
    """`random_checkpoint` (seeded) saved in `folder`, with `extra` metadata, for benchmarks of commands that read a
    checkpoint file."""
    import torch

    from fer_explain.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = random_checkpoint(backbone, variant)
    return save_checkpoint(Path(folder) / f"{backbone}_{variant}.safetensors", ckpt.model, ckpt.preprocessing, extra)


def _timings(fn, runs: int, warmup: int, sync) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def _summary(name: str, batch: int, times: list[float]) -> dict:
    import numpy as np
    t = np.asarray(times) * 1000.0
    return {"name": name, "batch": batch, "n": len(times), "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)), "per_face_ms": float(np.median(t)) / batch}


def measure(predictor, runs: int = 50, warmup: int = 3, batch: int = 64, methods=THREE, on_row=None) -> list[dict]:
    """The latency rows (see the module docstring); synthetic faces in the predictor's input format.
    `on_row(row)` is called as each row is measured (a long run shows progress)."""
    import torch
    pre = predictor.preprocessing
    size = pre.source_size or pre.image_size
    channels = 1 if pre.grayscale else 3
    generator = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8, generator=generator)
    one = faces[:1]
    # the predictor's own device: a bare torch.cuda.synchronize() waits on the current device, maybe another one
    sync = (lambda: torch.cuda.synchronize(predictor.device)) if predictor.device.type == "cuda" else (lambda: None)
    prediction = predictor.predict(one)[0]
    if prediction.spatial_attention is None:  # a model without eq. (2) has no attention map to time
        methods = [m for m in methods if m != "spatial_attention"]
        three = tuple(m for m in THREE if m != "spatial_attention")
    else:
        three = THREE

    rows = []

    def add(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    add(_summary("predict", 1, _timings(lambda: predictor.predict(one), runs, warmup, sync)))
    for method in methods:
        add(_summary(f"explain: {method}", 1, _timings(
            lambda m=method: predictor.explain(prediction, methods=(m,), faithfulness=False), runs, warmup, sync)))
    add(_summary("explain: " + " + ".join(three), 1, _timings(
        lambda: predictor.explain(prediction, methods=three, faithfulness=False), runs, warmup, sync)))
    add(_summary("explain: three + faithfulness", 1, _timings(
        lambda: predictor.explain(prediction, methods=three, faithfulness=True), max(5, runs // 5), 1, sync)))
    row = _summary("predict", batch, _timings(lambda: predictor.predict(faces), max(3, runs // 10), 1, sync))
    row["faces_per_s"] = batch / (row["median_ms"] / 1000.0)
    add(row)
    return rows


def _format_row(r: dict) -> str:
    fps = f"{r['faces_per_s']:8.1f}" if "faces_per_s" in r else f"{'':>8}"
    return (f"{r['name']:<52} {r['batch']:>5} {r['n']:>4} {r['median_ms']:>10.1f} {r['p90_ms']:>9.1f} "
            f"{r['per_face_ms']:>8.1f} {fps}")


def format_table(rows: list[dict]) -> str:
    header = f"{'measurement':<52} {'batch':>5} {'n':>4} {'median ms':>10} {'p90 ms':>9} {'ms/face':>8} {'faces/s':>8}"
    return "\n".join([header, *map(_format_row, rows)])


def run(args) -> int:
    import torch

    from fer_explain.output_paths import check_output_file
    from fer_explain.predictor import Predictor

    if args.checkpoint and args.backbone:
        raise UserError("give either --checkpoint or --backbone (a random-init model), not both")
    if args.runs < 1 or args.batch < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise UserError("--runs, --batch and --threads must be at least 1, --warmup at least 0")
    check_output_file(args.json, "--json")  # before anything is timed
    from fer_explain.explain import check_methods
    methods = tuple(check_methods(args.methods))  # before the model loads and the first rows are timed
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.backbone:
        source = random_checkpoint(args.backbone, args.variant)
    elif args.checkpoint:
        source = args.checkpoint
    else:
        from fer_explain.pipeline import default_checkpoint  # imports the face detector: only when needed
        source = default_checkpoint()
    predictor = Predictor(source, device=args.device, precision=args.precision)
    random_init = bool(args.backbone)
    load_before = os.getloadavg()
    start = time.perf_counter()
    name = predictor.name
    print(f"model: {name}" + (" (random init: speed does not depend on the weights)" if random_init else
                              f" ({source})"))
    print(format_table([]), flush=True)  # the header; each row is printed as soon as it is measured
    rows = measure(predictor, args.runs, args.warmup, args.batch, methods,
                   on_row=lambda row: print(_format_row(row), flush=True))
    load_after = os.getloadavg()
    print(f"device: {predictor.device}, precision: {predictor.precision}, torch threads: {torch.get_num_threads()}, "
          f"CPU cores: {os.cpu_count()}, "
          f"load average (1 min) before/after: {load_before[0]:.2f}/{load_after[0]:.2f}")
    result = {"model": name, "checkpoint": None if random_init else str(source), "random_init": random_init,
              "backbone": predictor.config.backbone, "variant": predictor.config.variant,
              "device": str(predictor.device),
              "device_name": torch.cuda.get_device_name(predictor.device) if predictor.device.type == "cuda" else "cpu",
              "precision": predictor.precision, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "torch_version": torch.__version__, "load_average_before": list(load_before),
              "load_average_after": list(load_after), "seconds": time.perf_counter() - start, "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
