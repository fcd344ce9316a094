"""Which explanation is faithful? Deletion / insertion AUC (fer_explain.explain.faithfulness) of each method's 7x7
map, for each model, over a seeded sample of faces of a split, against random token orders.

    python -m training.faithfulness --checkpoints checkpoints/fer-mobilenet_v2-bilstm.safetensors \
        checkpoints/fer-mobilenet_v2-baseline.safetensors --data ../shared/data/ferplus --split test --faces 500 \
        --out results

Each face is explained for the class the model predicts, with the `explain` command's settings: 7 tokens (one grid
row's worth) deleted or inserted per step, so 8 points per curve, and three random orders (the app uses two, to answer
sooner). Lower deletion AUC and higher insertion AUC mean a map points at what the prediction rests on; "beats random"
counts the faces where a map does better than that face's random orders on both. Also measured per face: how far
Integrated Gradients is from completeness, |sum of attributions - (f(x) - f(0))| / |f(x) - f(0)| on the target logit.
Writes faithfulness.json (per face and summary) and faithfulness.md into --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_explain.errors import UserError, run_command

SCORES = ("deletion_auc", "insertion_auc")
RANDOM_ORDERS = 3


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", required=True, help="model files (.safetensors) to compare")
    p.add_argument("--data", required=True, help="dataset folder holding the split")
    p.add_argument("--split", default="test")
    p.add_argument("--faces", type=int, default=500, help="faces drawn (seeded) from the split; 0: all of them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=Path("results"))
    return p


def sample_indices(n: int, faces: int, seed: int) -> list[int]:
    if faces < 0:
        raise UserError(f"--faces must be 0 (all) or more, not {faces}")
    if faces == 0 or faces >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=faces, replace=False).tolist())


def explain_faces(predictor, images, batch_size: int = 64) -> list[dict]:
    """Per face: predicted class and each method's deletion / insertion AUC, plus the random orders'."""
    from tqdm import tqdm

    from fer_explain.predictor import FAITHFULNESS_TOKENS_PER_STEP

    rows = []
    bar = tqdm(total=len(images), desc=predictor.name, unit="face", disable=not sys.stderr.isatty())
    for start in range(0, len(images), batch_size):
        for prediction in predictor.predict(images[start:start + batch_size]):
            explanation = predictor.explain(prediction, faithfulness_step=FAITHFULNESS_TOKENS_PER_STEP,
                                            faithfulness_random=RANDOM_ORDERS)
            rows.append({"label": prediction.label, "scores": explanation.faithfulness,
                         "ig_completeness": completeness_error(explanation.maps.get("token_saliency"))})
            bar.update()
    bar.close()
    return rows


def completeness_error(explanation) -> float | None:
    """|sum of IG attributions - (f(x) - f(0))| relative to |f(x) - f(0)|, from Captum's convergence delta (which is
    sum - (f(x) - f(0))); None when the model gave no token saliency."""
    if explanation is None:
        return None
    total, delta = explanation.meta["attribution_sum"], explanation.meta["convergence_delta"]
    return abs(delta) / max(abs(total - delta), 1e-12)


def completeness_summary(rows: list[dict]) -> dict | None:
    errors = [r["ig_completeness"] for r in rows if r["ig_completeness"] is not None]
    if not errors:
        return None
    return {"median": float(np.median(errors)), "p90": float(np.percentile(errors, 90)), "n": len(errors)}


def summarize(rows: list[dict]) -> dict:
    """method -> mean and std of each AUC over the faces, and the fraction of faces where it beats random on both."""
    from training.tables import stats

    methods = [m for m in rows[0]["scores"] if m != "random"] if rows else []
    summary = {}
    for method in methods + ["random"]:
        entry = {key: {k: v for k, v in stats([r["scores"][method][key] for r in rows]).items() if k != "values"}
                 for key in SCORES}  # the per-face values are stored once, under "faces"
        if method != "random":
            wins = [r["scores"][method]["deletion_auc"] < r["scores"]["random"]["deletion_auc"]
                    and r["scores"][method]["insertion_auc"] > r["scores"]["random"]["insertion_auc"] for r in rows]
            entry["beats_random"] = float(np.mean(wins))
        summary[method] = entry
    return summary


def markdown(result: dict) -> str:
    from fer_explain.explain.token_saliency import DEFAULT_STEPS
    from training.tables_markdown import pct

    lines = ["# Faithfulness of the explanations", "",
             f"{result['faces']} faces of the FER+ {result['split']} split (seed {result['seed']}), each explained "
             "for the class its model predicts. AUC of the target probability as the 49 tokens are deleted (lower "
             f"is better) or inserted (higher is better) in the map's order, {result['tokens_per_step']} per step "
             f"(ties in a seeded random order); random: {result['random_orders']} random orders per face. "
             "Beats random: faces where the map does better than random on both. Deleting a token sets it to zero, "
             "the baseline Integrated Gradients (token saliency) is defined against, so this test suits token "
             "saliency better than the other maps. Written by `python -m training.faithfulness`.", "",
             "| model | method | deletion AUC ↓ | insertion AUC ↑ | beats random |", "|---|---|---:|---:|---:|"]
    for model in result["models"]:
        for method, s in model["summary"].items():
            beats = "-" if "beats_random" not in s else f"{100 * s['beats_random']:.1f} %"
            lines.append(f"| {model['name']} | {method} | {pct(s['deletion_auc'])} | {pct(s['insertion_auc'])} "
                         f"| {beats} |")
    complete = [(m["name"], m["ig_completeness"]) for m in result["models"] if m.get("ig_completeness")]
    if complete:
        lines += ["", f"Integrated Gradients ({DEFAULT_STEPS} steps) against completeness, |Σ attributions − "
                  "(f(x) − f(0))| / |f(x) − f(0)| on the target logit: " + "; ".join(
                      f"{name} median {100 * c['median']:.2f} %, 90th percentile {100 * c['p90']:.2f} % "
                      f"({c['n']} faces)" for name, c in complete) + "."]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> dict:
    from fer_explain.data import load_split
    from fer_explain.evaluate import file_sha256
    from fer_explain.output_paths import check_output_folder
    from fer_explain.predictor import FAITHFULNESS_TOKENS_PER_STEP, Predictor

    check_output_folder(args.out, "--out")
    predictors = [Predictor(path, device=args.device) for path in args.checkpoints]  # bad files fail before work
    dataset = load_split(args.data, args.split)
    indices = sample_indices(len(dataset), args.faces, args.seed)
    images = dataset.images[indices]
    result = {"split": args.split, "data": str(args.data), "faces": len(indices), "seed": args.seed,
              "tokens_per_step": FAITHFULNESS_TOKENS_PER_STEP, "random_orders": RANDOM_ORDERS,
              "indices": indices, "models": []}
    for predictor in predictors:
        rows = explain_faces(predictor, images)
        methods = list(rows[0]["scores"]) if rows else []
        # per face, one AUC per method in `methods` order, rounded to 1e-4 so a thousand faces stay a small file;
        # the summary is of the exact values
        stored = [{"label": r["label"], **{key: [round(r["scores"][m][key], 4) for m in methods] for key in SCORES},
                   **({"ig_completeness": round(r["ig_completeness"], 5)} if r["ig_completeness"] is not None else {})}
                  for r in rows]
        result["models"].append({"name": predictor.name, "checkpoint": str(predictor.checkpoint_path),
                                 "sha256": file_sha256(predictor.checkpoint_path), "summary": summarize(rows),
                                 "ig_completeness": completeness_summary(rows), "methods": methods,
                                 "faces": stored})
        print(f"{predictor.name}: " + ", ".join(
            f"{m} {s['deletion_auc']['mean']:.3f} / {s['insertion_auc']['mean']:.3f}"
            for m, s in result["models"][-1]["summary"].items()) + " (deletion / insertion AUC)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    # compact: faithfulness.md is the readable summary
    (args.out / "faithfulness.json").write_text(json.dumps(result) + "\n")
    (args.out / "faithfulness.md").write_text(markdown(result))
    print(f"wrote {args.out / 'faithfulness.json'} and {args.out / 'faithfulness.md'}", file=sys.stderr)
    return result


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def run() -> None:
        main(args)

    return run_command(run)


if __name__ == "__main__":
    sys.exit(cli())
