"""The ablation study: every variant trained with several seeds, evaluated, and summarised like the paper's tables.

    python -m training.ablate --config training/configs/paper.yaml --data DIR --backbone resnet50 \
        --seeds 0 1 2 --out results/ [--epochs N] [--limit-train N] [--eval-split test] [--variants full baseline]

Runs train one after the other in this process (RUN_DIR = <runs-dir>/<backbone>/<variant>/seed<S>); finished
runs are skipped and interrupted ones resume, so rerunning the command continues the study. Each run's best
checkpoint (chosen on validation only) is then evaluated on the eval split (its val metrics are the ones training
recorded for that epoch), and results/ablation_<backbone>.json and .md are written from one dict
(training.ablation_report).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_explain.device import pick_device
from fer_explain.errors import UserError, run_command
from training.recipe import CHOICES

# variant -> (description, training flags); the paper's Table III rows plus the class-weighting ablation
VARIANTS = {
    "full": ("Bi-LSTM + channel + spatial attention (full)", []),
    "baseline": ("GAP + channel + spatial attention (baseline)", ["--variant", "baseline"]),
    "full_no_spatial": ("Bi-LSTM + channel attention", ["--spatial-attention", "none"]),
    "full_no_channel": ("Bi-LSTM + spatial attention", ["--channel-attention", "none"]),
    "baseline_no_spatial": ("GAP + channel attention", ["--variant", "baseline", "--spatial-attention", "none"]),
    "baseline_no_channel": ("GAP + spatial attention", ["--variant", "baseline", "--channel-attention", "none"]),
    "full_no_class_weighting": ("full, unweighted cross-entropy", ["--no-class-weighting"]),
}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe YAML shared by every run")
    p.add_argument("--data", required=True)
    p.add_argument("--backbone", required=True, choices=CHOICES["backbone"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", required=True, help="folder for ablation_<backbone>.md/.json")
    p.add_argument("--runs-dir", help="folder for the training runs (default: <out>/runs)")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    p.add_argument("--epochs", type=int)
    p.add_argument("--limit-train", type=int)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--eval-split", default="test", choices=("val", "test"))
    p.add_argument("--data-format")
    p.add_argument("--backbone-weights")
    return p


def train_argv(args: argparse.Namespace, variant: str, seed: int, run_dir: Path) -> list[str]:
    argv = ["--config", str(args.config), "--data", str(args.data), "--out", str(run_dir), "--backbone",
            args.backbone, "--seed", str(seed), "--device", args.device, *VARIANTS[variant][1]]
    for flag, value in (("--epochs", args.epochs), ("--limit-train", args.limit_train),
                        ("--data-format", args.data_format), ("--backbone-weights", args.backbone_weights)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def evaluate_run(run_dir: Path, splits: dict, device, flip_tta: bool) -> dict:
    """Metrics of a run's best checkpoint on each loaded split."""
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.evaluate import predict_probabilities
    from fer_explain.metrics import compute_metrics

    if not splits:
        return {}
    ckpt = load_checkpoint(run_dir, device)
    out = {}
    for name, dataset in splits.items():
        probs = predict_probabilities(ckpt.model, dataset, ckpt.preprocessing, device, flip_tta=flip_tta)
        out[name] = compute_metrics(dataset.labels.numpy(), probs.argmax(1))
    return out


def main(args: argparse.Namespace) -> dict:
    from fer_explain.data import load_split
    from training import train
    from training.ablation_report import render_markdown, summarise
    from training.recipe import load_recipe

    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds repeats a seed: {args.seeds}")
    recipe = load_recipe(args.config, {"backbone": args.backbone, "data_format": args.data_format})
    out_dir = Path(args.out)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out_dir / "runs"
    device = pick_device(args.device)
    # val metrics of the best epoch come with the training result; only another eval split needs a pass here
    splits = {} if args.eval_split == "val" else {args.eval_split: load_split(args.data, args.eval_split,
                                                                               recipe["data_format"])}
    runs: dict[str, dict[int, dict]] = {}
    for variant in args.variants:
        for seed in args.seeds:
            run_dir = runs_dir / args.backbone / variant / f"seed{seed}"
            print(f"== {variant}, seed {seed}: {run_dir}", file=sys.stderr)
            result = train.main(train.get_args_parser().parse_args(train_argv(args, variant, seed, run_dir)))
            metrics = {"val": result.best_validation, **evaluate_run(run_dir, splits, device, recipe["flip_tta"])}
            runs.setdefault(variant, {})[seed] = {"run_dir": str(run_dir), "best_epoch": result.best_epoch,
                                                  "epochs_run": len(result.log), **metrics}
    results = summarise(runs, {name: description for name, (description, _) in VARIANTS.items()},
                        eval_split=args.eval_split,
                        setup={"backbone": args.backbone, "config": str(args.config), "recipe": recipe.get("name"),
                               "data": str(Path(args.data).resolve()), "seeds": args.seeds, "epochs": args.epochs or
                               recipe["epochs"], "limit_train": args.limit_train, "flip_tta": recipe["flip_tta"],
                               "device": str(device),
                               "selection": f"best epoch on validation ({recipe['select_metric']})"})
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"ablation_{args.backbone}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render_markdown(results))
    print(f"wrote {stem}.md and {stem}.json", file=sys.stderr)
    return results


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def run() -> int:
        main(args)
        return 0

    return run_command(run, "rerun the same command to continue the study")


if __name__ == "__main__":
    sys.exit(cli())
