"""What a class-balanced decision would reach: post-hoc logit adjustment (Menon et al., "Long-tail learning via
logit adjustment", ICLR 2021) of a trained model, with its one parameter chosen on validation.

    python -m training.prior_correction --checkpoints checkpoints/fer-mobilenet_v2-bilstm.safetensors \
        checkpoints/fer-mobilenet_v2-baseline.safetensors --data ../shared/data/ferplus --out results

A model trained on FER+'s imbalanced classes (contempt and disgust are under 0.5 % of the faces) predicts them
rarely, which keeps overall accuracy high and mean class accuracy low. Predicting argmax_y log p(y|x) - tau log pi_y
instead, pi being the model's training class frequencies (stored in its checkpoint), trades one for the other: tau = 0
is the model as trained. tau is chosen on the val split as the value with the best mean class accuracy; the test split
is evaluated at tau = 0 and at that tau only. The probabilities are the ones the app decides with: divided by the
checkpoint's calibration temperature (fer_explain.temperature), so a tau chosen here means the same on the slider.
Writes prior_correction.json, .md and .png into --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_explain.classes import CLASSES
from fer_explain.decision import adjusted_scores, training_prior
from fer_explain.errors import UserError, run_writing_command
from fer_explain.temperature import checkpoint_temperature, temperature_scaled


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", required=True, help="model files (.safetensors)")
    p.add_argument("--data", required=True, help="dataset folder with the val and test splits")
    p.add_argument("--tau-max", type=float, default=1.5, help="largest tau tried (default 1.5)")
    p.add_argument("--tau-step", type=float, default=0.05, help="grid step of tau (default 0.05)")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=Path("results"))
    return p


def adjusted_predictions(probabilities: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    return adjusted_scores(probabilities, prior, tau).argmax(1)


def tau_grid(tau_max: float, step: float) -> np.ndarray:
    if step <= 0 or tau_max < 0:
        raise UserError(f"--tau-step must be > 0 and --tau-max >= 0 (got {step} and {tau_max})")
    return np.round(np.arange(0.0, tau_max + step / 2, step), 6)


def figures(labels: np.ndarray, predictions: np.ndarray) -> dict:
    from fer_explain.metrics import compute_metrics

    m = compute_metrics(labels, predictions, CLASSES)
    return {"accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"], "macro_f1": m["macro_f1"],
            "recall": {c: m["per_class"][c]["recall"] for c in CLASSES},
            "support": {c: m["per_class"][c]["support"] for c in CLASSES}}


def choose_tau(probabilities: np.ndarray, labels: np.ndarray, prior: np.ndarray, taus) -> tuple[float, list[dict]]:
    """The tau with the best val mean class accuracy (ties: the smaller tau), and the whole val curve."""
    curve = []
    for tau in taus:
        f = figures(labels, adjusted_predictions(probabilities, prior, tau))
        curve.append({"tau": float(tau), "accuracy": f["accuracy"], "mean_class_accuracy": f["mean_class_accuracy"]})
    best = max(curve, key=lambda point: (point["mean_class_accuracy"], -point["tau"]))
    return best["tau"], curve


def study_model(ckpt, prior: np.ndarray, datasets: dict, args, device) -> dict:
    from fer_explain.device import prepare_for_inference
    from fer_explain.evaluate import file_sha256, predict_probabilities

    model = prepare_for_inference(ckpt.model, device)
    temperature = checkpoint_temperature(ckpt.metadata, ckpt.path)
    splits = {split: (temperature_scaled(predict_probabilities(model, dataset, ckpt.preprocessing, device,
                                                               args.batch_size, args.flip_tta,
                                                               progress=sys.stderr.isatty()), temperature),
                      dataset.labels.cpu().numpy())
              for split, dataset in datasets.items()}
    tau, curve = choose_tau(*splits["val"], prior, tau_grid(args.tau_max, args.tau_step))
    at = {split: {"as_trained": figures(labels, adjusted_predictions(p, prior, 0.0)),
                  "balanced": figures(labels, adjusted_predictions(p, prior, tau))}
          for split, (p, labels) in splits.items()}
    return {"name": ckpt.config.display_name, "checkpoint": str(ckpt.path),
            "sha256": file_sha256(ckpt.path), "temperature": temperature, "prior": dict(zip(CLASSES, prior.tolist())),
            "tau": tau, "val_curve": curve, **at}


def markdown(result: dict) -> str:
    from training.tables_markdown import pct

    support = result["models"][0]["val"]["as_trained"]["support"]
    rarest = " and ".join(f"{n} {c}" for c, n in sorted((i for i in support.items() if i[1]), key=lambda i: i[1])[:2])
    lines = ["# A class-balanced decision: post-hoc logit adjustment", "",
             "Each model predicts argmax log p(y|x) − τ log π_y, π its training class frequencies; τ = 0 is the "
             "model as trained, the other τ the one with the best val mean class accuracy (grid "
             f"0…{result['tau_max']:g} in steps of {result['tau_step']:g}). The test split was evaluated at these "
             f"two values only; the val figures at the chosen τ are optimistic, since τ was chosen on them (val has "
             f"{rarest} faces). p is calibrated as the app shows it: "
             + ", ".join(f"{m['name']} T = {m.get('temperature', 1.0):.3g}" for m in result["models"])
             + " (1: as trained). "
             f"{'Flip TTA. ' if result['flip_tta'] else 'No TTA, as the app and `evaluate` run. '}"
             "Written by `python -m training.prior_correction`.", "",
             "| model | decision | τ | val accuracy | val mean class acc. | test accuracy | test mean class acc. "
             "| test macro F1 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in result["models"]:
        for key, tau in (("as_trained", 0.0), ("balanced", m["tau"])):
            v, t = m["val"][key], m["test"][key]
            lines.append(f"| {m['name']} | {key.replace('_', ' ')} | {tau:g} | {pct(v['accuracy'])} | "
                         f"{pct(v['mean_class_accuracy'])} | {pct(t['accuracy'])} | {pct(t['mean_class_accuracy'])} "
                         f"| {pct(t['macro_f1'])} |")
    lines += ["", "Test accuracy per class (recall), %:", "", "| model | decision | " + " | ".join(CLASSES) + " |",
              "|---|---|" + "---:|" * len(CLASSES)]
    for m in result["models"]:
        for key in ("as_trained", "balanced"):
            recall = m["test"][key]["recall"]
            lines.append(f"| {m['name']} | {key.replace('_', ' ')} | "
                         + " | ".join(pct(recall[c]) for c in CLASSES) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Val accuracy against val mean class accuracy as tau grows, with both test points of each model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, m in enumerate(result["models"]):
        color = f"C{i}"
        ax.plot([100 * p["mean_class_accuracy"] for p in m["val_curve"]], [100 * p["accuracy"] for p in m["val_curve"]],
                color=color, label=f"{m['name']}: val, tau 0 to {result['tau_max']:g}")
        for key, marker in (("as_trained", "o"), ("balanced", "s")):
            t = m["test"][key]
            ax.plot(100 * t["mean_class_accuracy"], 100 * t["accuracy"], marker, color=color, markersize=8,
                    label=f"{m['name']}: test, {key.replace('_', ' ')}")
    # frame the marked points: at large tau the curve runs off to rare classes predicted everywhere
    marked = [m[split][key] for m in result["models"] for split in ("val", "test")
              for key in ("as_trained", "balanced")]
    ax.set_xlim(100 * min(f["mean_class_accuracy"] for f in marked) - 10, None)
    ax.set_ylim(max(0.0, 100 * min(f["accuracy"] for f in marked) - 15), None)
    ax.set_xlabel("mean class accuracy (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Logit adjustment: overall vs class-balanced accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(args: argparse.Namespace) -> list[Path]:
    from fer_explain.device import pick_device
    from fer_explain.evaluate import load_classifier, load_evaluation_split
    from fer_explain.output_paths import check_output_folder

    check_output_folder(args.out, "--out")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    tau_grid(args.tau_max, args.tau_step)  # a bad grid fails before any evaluation
    device = pick_device(args.device)
    checkpoints = [load_classifier(path, device) for path in args.checkpoints]  # bad files fail before any work
    priors = [training_prior(ckpt.metadata, ckpt.path) for ckpt in checkpoints]
    datasets = {split: load_evaluation_split(args.data, split) for split in ("val", "test")}  # once, for every model
    result = {"data": str(args.data), "flip_tta": bool(args.flip_tta), "tau_max": args.tau_max,
              "tau_step": args.tau_step, "selection": "best val mean class accuracy; ties: the smaller tau",
              "models": [study_model(ckpt, prior, datasets, args, device) for ckpt, prior in zip(checkpoints, priors)]}
    for m in result["models"]:
        print(f"{m['name']}: tau {m['tau']:g}: test accuracy {100 * m['test']['as_trained']['accuracy']:.2f} -> "
              f"{100 * m['test']['balanced']['accuracy']:.2f} %, mean class accuracy "
              f"{100 * m['test']['as_trained']['mean_class_accuracy']:.2f} -> "
              f"{100 * m['test']['balanced']['mean_class_accuracy']:.2f} %", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "prior_correction.json", args.out / "prior_correction.md"]
    written[0].write_text(json.dumps(result, indent=1) + "\n")
    written[1].write_text(markdown(result))
    written.append(plot(result, args.out / "prior_correction.png"))
    return written


def cli(argv: list[str] | None = None) -> int:
    return run_writing_command(main, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
