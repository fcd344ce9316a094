"""What would make a trained model's probabilities honest: temperature scaling (Guo et al., "On calibration of modern
neural networks", ICML 2017), its one parameter fitted on validation.

    python -m training.temperature --checkpoints checkpoints/fer-mobilenet_v2-bilstm.safetensors \
        checkpoints/fer-mobilenet_v2-baseline.safetensors --data ../shared/data/ferplus --out results

Dividing the logits by T > 0 leaves every decision as it is (the argmax does not move) and only sharpens (T < 1) or
softens (T > 1) the probabilities. T is the value with the lowest negative log-likelihood on the val split; the test
split is evaluated at T = 1 (the model as trained) and at that T only, with fer_explain.calibration's ECE, NLL and
Brier score. One view, as the app and `evaluate` run. Writes temperature.json and .md into --out.

The probabilities are the model's as trained, whatever T the file records: the fit is the one `python -m fer_explain
calibrate` (and training.ship) writes into a checkpoint, and each model's `recorded_temperature` says what its file
holds, so a file calibrated on the same val split shows the same T.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_explain.errors import UserError, run_writing_command
from fer_explain.temperature import checkpoint_temperature, fit_temperature, temperature_scaled


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", required=True, help="model files (.safetensors)")
    p.add_argument("--data", required=True, help="dataset folder with the val and test splits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=Path("results"))
    return p


def study_model(ckpt, datasets: dict, args, device) -> dict:
    from fer_explain.calibration import calibration_metrics
    from fer_explain.device import prepare_for_inference
    from fer_explain.evaluate import file_sha256, predict_probabilities

    model = prepare_for_inference(ckpt.model, device)
    splits = {split: (predict_probabilities(model, dataset, ckpt.preprocessing, device, args.batch_size, False,
                                            progress=sys.stderr.isatty()), dataset.labels.cpu().numpy())
              for split, dataset in datasets.items()}
    temperature = fit_temperature(*splits["val"])
    figures = {split: {"as_trained": calibration_metrics(p, labels),
                       "scaled": calibration_metrics(temperature_scaled(p, temperature), labels)}
               for split, (p, labels) in splits.items()}
    return {"name": ckpt.config.display_name, "checkpoint": str(ckpt.path), "sha256": file_sha256(ckpt.path),
            "temperature": temperature, "recorded_temperature": checkpoint_temperature(ckpt.metadata, ckpt.path),
            **figures}


def markdown(result: dict) -> str:
    from training.tables_markdown import pct

    lines = ["# Calibration: temperature scaling", "",
             "Each model's probabilities as trained (T = 1) and with its logits divided by the T of lowest val "
             "negative log-likelihood; the decisions, and so the accuracy, are the same at any T. ECE: expected "
             f"calibration error over {result['models'][0]['test']['as_trained']['n_bins']} equal-width bins of the "
             "predicted class's probability. The test split was evaluated at these two values only; the val "
             "figures at the fitted T are optimistic, since T was fitted on them. One view, as the app and "
             "`evaluate` run. Written by `python -m training.temperature`.", "",
             "| model | T | val ECE | val NLL | test ECE | test NLL | test Brier | test mean confidence | "
             "test accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in result["models"]:
        for key, temperature in (("as_trained", 1.0), ("scaled", m["temperature"])):
            v, t = m["val"][key], m["test"][key]
            lines.append(f"| {m['name']} | {temperature:.3g} | {pct(v['ece'])} | {v['nll']:.3f} | {pct(t['ece'])} | "
                         f"{t['nll']:.3f} | {t['brier']:.3f} | {pct(t['mean_confidence'])} | {pct(t['accuracy'])} |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> list[Path]:
    from fer_explain.device import pick_device
    from fer_explain.evaluate import load_classifier, load_evaluation_split
    from fer_explain.output_paths import check_output_folder

    check_output_folder(args.out, "--out")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = pick_device(args.device)
    checkpoints = [load_classifier(path, device) for path in args.checkpoints]  # bad files fail before any work
    datasets = {split: load_evaluation_split(args.data, split) for split in ("val", "test")}  # once, for every model
    result = {"data": str(args.data), "flip_tta": False, "fit": "lowest val negative log-likelihood",
              "models": [study_model(ckpt, datasets, args, device) for ckpt in checkpoints]}
    for m in result["models"]:
        before, after = m["test"]["as_trained"], m["test"]["scaled"]
        print(f"{m['name']}: T = {m['temperature']:.3g}: test ECE {100 * before['ece']:.2f} -> "
              f"{100 * after['ece']:.2f} %, NLL {before['nll']:.3f} -> {after['nll']:.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "temperature.json", args.out / "temperature.md"]
    written[0].write_text(json.dumps(result, indent=1) + "\n")
    written[1].write_text(markdown(result))
    return written


def cli(argv: list[str] | None = None) -> int:
    return run_writing_command(main, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
