"""`python -m fer_explain evaluate`: a checkpoint's accuracy, per-class metrics, confusion matrix and calibration
(fer_explain.calibration: how far its probabilities can be taken at their word) on a data split.

Images stay uint8 until each batch is transformed on the device (fer_explain.transforms.eval_transform), so memory
holds 48x48 bytes, not 224x224 floats. Inference runs under `torch.inference_mode` in channels_last layout (the
fast path of oneDNN on CPU and of cuDNN on GPU), with bf16 autocast on CUDA. The probabilities are the ones the app
shows: divided by the checkpoint's calibration temperature (fer_explain.temperature; after the flip-TTA mean, so the
as-trained decision never moves). `--prior-correction TAU` evaluates the adjusted decision rule of
fer_explain.decision (TAU = 0: the model as trained).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from fer_explain.classes import CLASSES
from fer_explain.decision import (add_prior_correction_argument, adjust_probabilities, adjusted_scores,
                                  check_prior_correction, training_prior)
from fer_explain.device import pick_device
from fer_explain.errors import UserError
from fer_explain.temperature import checkpoint_temperature, temperature_scaled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint .safetensors, run directory, or hf://owner/repo/file")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--data-format", default="auto", help="dataset layout (default: auto-detect)")
    parser.add_argument("--json", type=Path, help="write the metrics and run details to this JSON file")
    parser.add_argument("--out", type=Path, help="folder for metrics.json, confusion_matrix.png and reliability.png")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: 256 on CUDA, 32 on CPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped image")
    add_prior_correction_argument(parser)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_batch_size(device) -> int:
    """Evaluation batch when none is given: large on a GPU, small enough on a CPU to keep memory modest."""
    return 256 if device.type == "cuda" else 32


def predict_probabilities(model, dataset, preprocessing, device, batch_size: int = 256, flip_tta: bool = False,
                          progress: bool = True, keep_views: bool = False) -> np.ndarray:
    """Softmax probabilities (N, num_classes) float32 for every image of `dataset`, in its order; with flip TTA
    the mean of the two views', or with `keep_views` each view's, (views, N, num_classes), the unflipped first.

    The model is moved to `device`, put in eval mode and converted to channels_last in place."""
    import torch
    from torchvision.transforms.v2.functional import rgb_to_grayscale
    from tqdm import tqdm

    from fer_explain.transforms import eval_transform

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    images = dataset.images
    if images.dim() == 3:
        images = images.unsqueeze(1)
    views_out = np.empty((2 if flip_tta else 1, len(images), model.config.num_classes), dtype=np.float32)
    with torch.inference_mode(), tqdm(total=len(images), desc="evaluate", unit="img", disable=not progress,
                                      file=sys.stderr) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            if preprocessing.grayscale and batch.shape[1] == 3:  # trained on gray faces: match that on colour data
                batch = rgb_to_grayscale(batch)
            x = eval_transform(batch, preprocessing).contiguous(memory_format=torch.channels_last)
            for v, view in enumerate([x, x.flip(-1)] if flip_tta else [x]):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
                    views_out[v, start:start + len(batch)] = model(view).float().softmax(-1).cpu().numpy()
            bar.update(len(batch))
    return views_out if keep_views else views_out.mean(0)


def load_classifier(spec, device):
    """A checkpoint whose classes are this project's (same names, same order), which metrics here assume."""
    from fer_explain.checkpoint import load_checkpoint

    ckpt = load_checkpoint(spec, device)  # a bad stored config is already a UserError there
    if tuple(ckpt.config.classes) != CLASSES:
        raise UserError(f"{ckpt.path}: its classes {list(ckpt.config.classes)} are not this project's "
                        f"{list(CLASSES)} (same names, same order)")
    return ckpt


def load_evaluation_split(data, split: str, data_format: str = "auto"):
    """`split` of the data set in `data`, refused when it holds no image (its metrics would be 0/0)."""
    from fer_explain.data import load_split

    dataset = load_split(data, split, data_format)
    if len(dataset) == 0:
        raise UserError(f"no images in split {split!r} of {data}")
    return dataset


def _load(args, device):
    return load_classifier(args.checkpoint, device), load_evaluation_split(args.data, args.split, args.data_format)


def evaluation_record(ckpt, dataset, device, batch_size: int, flip_tta: bool, data: str, split: str,
                      progress: bool = True, prior_correction: float = 0.0) -> dict:
    """Metrics of `ckpt` on `dataset` plus what is needed to trust and repeat them: the checkpoint's sha256, the
    data's fingerprint, the settings, the time taken, and every image's predicted class (to compare two runs).
    prior_correction: the decision rule's tau (fer_explain.decision; 0 = argmax of the probabilities)."""
    import torch

    from fer_explain.calibration import calibration_metrics
    from fer_explain.device import prepare_for_inference
    from fer_explain.metrics import compute_metrics

    tau = check_prior_correction(prior_correction)
    prior = training_prior(ckpt.metadata, ckpt.path, ckpt.config.classes) if tau else None
    temperature = checkpoint_temperature(ckpt.metadata, ckpt.path)
    model = prepare_for_inference(ckpt.model, device)
    start = time.perf_counter()
    views = predict_probabilities(model, dataset, ckpt.preprocessing, device, batch_size, flip_tta, progress,
                                  keep_views=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    # calibrated after the mean of the views: a monotone map of each row, so the as-trained decision never moves
    mean_view = temperature_scaled(views.mean(0), temperature)
    first_view = temperature_scaled(views[0], temperature) if flip_tta else mean_view  # one view: the same array

    def decide(probabilities):  # the same rule for the TTA mean and for the single view below
        return (adjusted_scores(probabilities, prior, tau) if tau else probabilities).argmax(1)

    def shown(probabilities):  # the probabilities whose argmax is decided: what a user of the model reads
        return adjust_probabilities(probabilities, prior, tau) if tau else probabilities

    labels, predictions = dataset.labels.cpu().numpy(), decide(mean_view)
    return {
        **compute_metrics(labels, predictions, CLASSES),
        "calibration": calibration_metrics(shown(mean_view), labels), "temperature": temperature,
        # with flip TTA, the unflipped view alone as well: what the app and `evaluate` without --flip-tta compute
        "single_view_accuracy": float((decide(first_view) == labels).mean()) if flip_tta else None,
        "single_view_calibration": calibration_metrics(shown(first_view), labels) if flip_tta else None,
        "checkpoint": str(ckpt.path), "checkpoint_sha256": file_sha256(ckpt.path),
        "model_config": ckpt.config.to_dict(),
        "data": str(data), "data_source": dataset.source, "split": split, "data_fingerprint": dataset.fingerprint(),
        "skipped": [{"file": str(f), "reason": str(r)} for f, r in dataset.skipped], "n_skipped": len(dataset.skipped),
        "flip_tta": bool(flip_tta), "prior_correction": tau, "batch_size": batch_size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "seconds": round(seconds, 3), "images_per_s": round(len(dataset) / seconds, 2),
        "predictions": predictions.astype(int).tolist(),
    }


def run(args) -> int:
    from fer_explain.calibration import format_calibration, save_reliability_png
    from fer_explain.confusion_plot import save_confusion_png
    from fer_explain.metrics import format_metrics
    from fer_explain.output_paths import check_output_file, check_output_folder

    check_output_file(args.json, "--json")  # before the evaluation, not after it
    check_output_folder(args.out, "--out")
    device = pick_device(args.device)
    batch_size = args.batch_size if args.batch_size is not None else default_batch_size(device)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    tau = check_prior_correction(args.prior_correction)
    ckpt, dataset = _load(args, device)
    record = evaluation_record(ckpt, dataset, device, batch_size, args.flip_tta, args.data, args.split,
                               progress=sys.stderr.isatty(), prior_correction=tau)  # no bar in a log file
    metrics, seconds = record, record["seconds"]
    calibrated = f", calibrated with T = {record['temperature']:.3g}" if record["temperature"] != 1 else ""
    print(f"{ckpt.path.name} on {dataset.source} split {args.split!r}: {len(dataset)} images in {seconds:.1f} s "
          f"({len(dataset) / seconds:.1f} images/s, {device.type}{', flip TTA' if args.flip_tta else ''}"
          f"{f', prior correction tau = {tau:g}' if tau else ''}{calibrated})")
    if metrics["missing_classes"]:
        print(f"note: the data has no {', '.join(metrics['missing_classes'])} images; macro and mean-class "
              f"metrics are over the {len(metrics['evaluated_classes'])} classes it has")
    print(format_metrics(metrics))
    print(format_calibration(metrics["calibration"]))
    if args.flip_tta:
        print(f"without the flipped view (as the app predicts): accuracy {100 * metrics['single_view_accuracy']:.2f}%")

    text = json.dumps(record, indent=2)
    written = []
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        written.append(args.json)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(text + "\n")
        title = f"{ckpt.path.name} - {args.split} ({len(dataset)} images, accuracy {100 * metrics['accuracy']:.1f}%)"
        written += [args.out / "metrics.json",
                    save_confusion_png(args.out / "confusion_matrix.png", metrics["confusion_matrix"], CLASSES, title),
                    save_reliability_png(args.out / "reliability.png", metrics["calibration"], title)]
    for path in written:
        print(f"wrote {path}")
    return 0
