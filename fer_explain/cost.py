"""`python -m fer_explain cost`: parameters, FLOPs, latency and peak memory of a model.

FLOPs are counted as 2 x multiply-accumulates (the convention of `torch.utils.flop_counter`, and of the
"~4.1 GMACs / 8.2 GFLOPs" usually quoted for ResNet50). The counter sees convolutions and matrix products but
counts 0 for `nn.LSTM` on CPU (its fused kernel has no formula), so the Bi-LSTM is added analytically by
`lstm_flops`. On CUDA the counter does see the LSTM's matrix products; whatever it attributes to an LSTM module is
replaced by the analytic figure, so a device never counts the Bi-LSTM twice.

LSTM formula, per direction, per layer, per time step: the four gates are W_ih x_t + W_hh h_{t-1}, i.e.
4*H*(I_l + H) MACs, where I_l = input_size for layer 0 and directions*H above it. Biases, sigmoid/tanh and the
elementwise cell update are O(H) and left out, as the counter leaves out biases and activations elsewhere:

    lstm_flops = 2 * seq_len * directions * sum_l 4*H*(I_l + H)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

STAGES = ("backbone", "channel_attention", "spatial_attention", "sequence", "head")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="measure this checkpoint's model")
    source.add_argument("--backbone", help="or build a random-weight model: resnet50, resnet18, mobilenet_v2")
    parser.add_argument("--variant", default="full", choices=("full", "baseline"),
                        help="with --backbone: Bi-LSTM (full) or global average pooling (baseline)")
    parser.add_argument("--channel-attention", default="channel", choices=("channel", "none"))
    parser.add_argument("--spatial-attention", default="spatial", choices=("spatial", "none"))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per batch size "
                        "(default: 20 on CUDA; on CPU 10 at batch 1, 3 at larger batches)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64],
                        help="batch sizes to time (default: 1 64)")


def lstm_flops(input_size: int, hidden: int, layers: int, seq_len: int, bidirectional: bool = True) -> int:
    """Forward FLOPs (2 x MACs) of an LSTM over one sequence of `seq_len` steps (batch 1); see the module docstring."""
    directions = 2 if bidirectional else 1
    macs = 0
    for layer in range(layers):
        layer_input = input_size if layer == 0 else directions * hidden
        macs += 4 * hidden * (layer_input + hidden) * seq_len * directions
    return 2 * macs


def count_parameters(model) -> dict:
    """Total and per-stage parameter counts (0 for a stage the configuration switches off)."""
    params = {"total": sum(p.numel() for p in model.parameters())}
    for stage in STAGES:
        module = getattr(model, stage, None)
        params[stage] = 0 if module is None else sum(p.numel() for p in module.parameters())
    return params


def flops_trustworthy(cost: dict) -> bool:
    """Whether a cost JSON's FLOPs hold the Bi-LSTM once. Files written before count_flops replaced the counter's own
    LSTM count lack `flops_lstm_counter`: on CUDA that counter sees the LSTM, so theirs hold it twice; on CPU it
    sees none, and a baseline has no LSTM."""
    return "flops_lstm_counter" in cost or cost.get("device") == "cpu" or cost.get("flops_lstm_analytic") == 0


def count_flops(model, device, image_size: int = 224) -> dict:
    """FLOPs of one image: the counter's figure, the analytic LSTM part and their sum."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lstm_calls = []  # (module, sequence length) of every LSTM the forward pass runs

    def remember(module, inputs, _output):
        x = inputs[0]
        lstm_calls.append((module, x.shape[1] if module.batch_first else x.shape[0]))

    hooks = [m.register_forward_hook(remember) for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        x = torch.zeros(1, 3, image_size, image_size, device=device)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    analytic = sum(lstm_flops(m.input_size, m.hidden_size, m.num_layers, t, m.bidirectional) for m, t in lstm_calls)
    counted = counter.get_total_flops()
    # the counter names modules "<root class>.<qualified name>"; an LSTM's own count excludes its parents'
    root, per_module = type(model).__name__, counter.get_flop_counts()
    counted_lstm = sum(sum(per_module.get(f"{root}.{name}", {}).values()) for name, m in model.named_modules()
                       if isinstance(m, torch.nn.LSTM))
    return {"flops_counter": int(counted), "flops_lstm_counter": int(counted_lstm),
            "flops_lstm_analytic": int(analytic), "flops": int(counted - counted_lstm + analytic)}


def _default_runs(device, batch: int) -> tuple[int, int]:
    """(runs, warm-up runs): ResNet50 at batch 64 takes seconds per run on a small CPU, so fewer there."""
    if device.type == "cuda":
        return 20, 5
    return (10, 2) if batch < 16 else (3, 1)


def measure_cost(model, device, image_size: int = 224, batch_sizes=(1, 64), runs: int | None = None,
                 warmup: int | None = None) -> dict:
    """Parameters, FLOPs (batch 1), median latency and images/s per batch size, peak CUDA memory at the largest
    batch (None on CPU). Timing uses the evaluate settings: inference_mode, channels_last, bf16 autocast on CUDA.
    Dict keys of per-batch figures are the batch sizes as strings, as they appear in JSON."""
    import torch

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    model = model.to(device).eval()
    result = {"params": count_parameters(model), **count_flops(model, device, image_size)}
    result["gflops"] = result["flops"] / 1e9
    result["macs"] = result["flops"] // 2
    from fer_explain.device import prepare_for_inference

    model = prepare_for_inference(model, device)  # timed as evaluate and the predictor run it

    latency, throughput, used_runs = {}, {}, {}
    peak = None
    for batch in batch_sizes:
        n_runs, n_warm = _default_runs(device, batch)
        n_runs, n_warm = runs or n_runs, n_warm if warmup is None else warmup
        x = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
            for i in range(n_warm + n_runs):
                if on_cuda and i == n_warm and batch == max(batch_sizes):
                    torch.cuda.reset_peak_memory_stats(device)
                if on_cuda:
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(x)
                if on_cuda:
                    torch.cuda.synchronize(device)
                if i >= n_warm:
                    times.append(time.perf_counter() - start)
        if on_cuda and batch == max(batch_sizes):
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        median = statistics.median(times)
        latency[str(batch)], throughput[str(batch)], used_runs[str(batch)] = 1000 * median, batch / median, n_runs

    result.update({
        "latency_ms": latency, "images_per_s": throughput, "runs": used_runs, "peak_memory_mb": peak,
        "peak_memory_batch": max(batch_sizes) if on_cuda else None,
        "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
        "precision": "bf16 autocast" if on_cuda else "float32", "image_size": image_size,
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
    })
    return result


def format_cost(cost: dict) -> str:
    p = cost["params"]
    lines = [f"parameters      {p['total'] / 1e6:8.2f} M"]
    lines += [f"  {stage:<17} {p[stage] / 1e6:8.3f} M" for stage in STAGES]
    lines += [f"FLOPs (batch 1) {cost['gflops']:8.2f} G  (= 2 x {cost['macs'] / 1e9:.2f} GMACs)",
              f"  counter         {cost['flops_counter'] / 1e9:8.3f} G  (of which LSTM, replaced: "
              f"{cost['flops_lstm_counter'] / 1e9:.3f} G)",
              f"  LSTM, analytic  {cost['flops_lstm_analytic'] / 1e9:8.3f} G",
              f"latency on {cost['device']} ({cost['precision']}, {cost['cpu_threads']} CPU threads):",
              f"  {'batch':>6} {'median ms':>10} {'images/s':>9} {'runs':>5}"]
    for batch, ms in cost["latency_ms"].items():
        lines.append(f"  {batch:>6} {ms:10.1f} {cost['images_per_s'][batch]:9.1f} {cost['runs'][batch]:>5}")
    if cost["peak_memory_mb"] is not None:
        lines.append(f"peak GPU memory at batch {cost['peak_memory_batch']}: {cost['peak_memory_mb']:.0f} MiB")
    return "\n".join(lines)


def _model_from_args(args, device):
    from fer_explain.errors import UserError

    if args.checkpoint:
        from fer_explain.checkpoint import load_checkpoint
        return load_checkpoint(args.checkpoint, device).model  # a bad stored config is already a UserError there
    from fer_explain.backbones import BACKBONES
    from fer_explain.config import ModelConfig
    from fer_explain.model import build_model
    if args.backbone not in BACKBONES:
        raise UserError(f"unknown backbone {args.backbone!r}; expected one of {', '.join(sorted(BACKBONES))}")
    config = ModelConfig(backbone=args.backbone, variant=args.variant, channel_attention=args.channel_attention,
                         spatial_attention=args.spatial_attention)
    return build_model(config).to(device)


def run(args) -> int:
    from fer_explain.errors import UserError
    from fer_explain.device import pick_device
    from fer_explain.output_paths import check_output_file

    if args.runs is not None and args.runs < 1:
        raise UserError(f"--runs must be at least 1, got {args.runs}")
    if min(args.batch_sizes) < 1:
        raise UserError(f"batch sizes must be at least 1, got {args.batch_sizes}")
    check_output_file(args.json, "--json")  # before the measurement, not after it
    device = pick_device(args.device)
    model = _model_from_args(args, device)
    cost = measure_cost(model, device, batch_sizes=tuple(args.batch_sizes), runs=args.runs)
    cost["model_config"] = model.config.to_dict()
    cost["checkpoint"] = args.checkpoint
    print(format_cost(cost))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(cost, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
