"""`python -m fer_explain calibrate`: fits a checkpoint's temperature (fer_explain.temperature) on a held-out split and
records it in the checkpoint, so that the app, `predict`, `explain` and `evaluate` show calibrated probabilities.

    python -m fer_explain calibrate --checkpoint runs/x/model.safetensors --data ../shared/data/ferplus

T is fitted to the model as trained (a T the file already records is replaced, not compounded), on one view as the
app predicts, by the lowest negative log-likelihood of the split's labels. The weights are kept byte for byte; only
the metadata changes, and with it the file's sha256. The train and test splits are refused: the model has fitted the
first, and a T chosen on the second would make every test figure of the probabilities optimistic.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fer_explain.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint .safetensors or run directory")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split", default="val", help="held-out split to fit T on (default: val; train and test "
                                                        "are refused)")
    parser.add_argument("--data-format", default="auto", help="dataset layout (default: auto-detect)")
    parser.add_argument("--out", type=Path, help="write the calibrated checkpoint here (.safetensors) instead of "
                                                 "rewriting --checkpoint in place")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: 256 on CUDA, 32 on CPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def calibration_record(ckpt, dataset, split: str, device, batch_size: int, progress: bool = True) -> dict:
    """T fitted on `dataset` for the loaded checkpoint, and the split's ECE and NLL before and after: what the
    checkpoint records under `calibration`. Nothing time- or machine-dependent, so that the same weights and data
    give the same file."""
    from fer_explain.calibration import calibration_metrics
    from fer_explain.device import prepare_for_inference
    from fer_explain.evaluate import predict_probabilities
    from fer_explain.temperature import fit_temperature, temperature_scaled

    model = prepare_for_inference(ckpt.model, device)
    probabilities = predict_probabilities(model, dataset, ckpt.preprocessing, device, batch_size, False, progress)
    labels = dataset.labels.cpu().numpy()
    temperature = fit_temperature(probabilities, labels)
    figures = {key: calibration_metrics(p, labels) for key, p in
               (("as_trained", probabilities), ("calibrated", temperature_scaled(probabilities, temperature)))}
    return {"temperature": temperature,
            "method": "temperature scaling (Guo et al. 2017): lowest negative log-likelihood, one view",
            "split": split, "data_source": dataset.source, "data_fingerprint": dataset.fingerprint(),
            "images": len(dataset),
            **{key: {"ece": f["ece"], "nll": f["nll"], "mean_confidence": f["mean_confidence"]}
               for key, f in figures.items()}}


def check_calibration_split(split: str) -> None:
    if split in ("train", "test"):  # train: the model has fitted it; test: its figures would become optimistic
        raise UserError(f"the temperature is fitted on a held-out split, never on {split} (on train the model is "
                        "overconfident, and on test every test figure of the probabilities would be optimistic): "
                        "use --split val")


def calibrate_checkpoint(ckpt, dataset, split: str, device, batch_size: int, out: Path | None = None,
                         progress: bool = True) -> tuple[Path, dict]:
    """Fit T for the loaded checkpoint and write the file (in place, or to `out`) with it recorded."""
    from fer_explain.checkpoint import rewrite_metadata

    check_calibration_split(split)
    calibration = calibration_record(ckpt, dataset, split, device, batch_size, progress)
    return rewrite_metadata(ckpt.path, {**ckpt.metadata, "calibration": calibration}, out), calibration


def run(args) -> int:
    import sys

    from fer_explain.device import pick_device
    from fer_explain.evaluate import default_batch_size, file_sha256, load_classifier, load_evaluation_split
    from fer_explain.output_paths import check_output_file

    check_calibration_split(args.split)  # before loading anything
    if args.out is not None and args.out.suffix != ".safetensors":
        raise UserError(f"--out must be a .safetensors file; got {args.out}")
    check_output_file(args.out, "--out")
    device = pick_device(args.device)
    batch_size = args.batch_size if args.batch_size is not None else default_batch_size(device)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    ckpt = load_classifier(args.checkpoint, device)
    dataset = load_evaluation_split(args.data, args.split, args.data_format)
    path, c = calibrate_checkpoint(ckpt, dataset, args.split, device, batch_size, args.out,
                                   progress=sys.stderr.isatty())
    before, after = c["as_trained"], c["calibrated"]
    print(f"{ckpt.path.name}: T = {c['temperature']:.3g}, fitted on {args.split} ({c['images']} images): ECE "
          f"{100 * before['ece']:.2f} -> {100 * after['ece']:.2f} %, NLL {before['nll']:.3f} -> {after['nll']:.3f}, "
          f"mean confidence {100 * before['mean_confidence']:.1f} -> {100 * after['mean_confidence']:.1f} %")
    print(f"wrote {path} (sha256 {file_sha256(path)})")
    return 0
