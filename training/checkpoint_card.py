"""checkpoints/README.md, the shipped pair's model card, written by training.ship from the run records and this
machine's evaluation of the shipped files: data, recipe, seeds, validation and test figures, sha256, reproduction."""
from __future__ import annotations

from training.records import Record, by_variant
from training.tables import stats
from training.tables_markdown import pct, seeds_cell


def _recipe_lines(recipe: dict) -> list[str]:
    keys = ("optimizer", "lr", "weight_decay", "batch_size", "epochs", "patience", "lr_schedule", "class_weighting",
            "soft_labels", "label_smoothing", "ema", "grad_clip", "amp", "rotation_degrees", "hflip", "flip_tta",
            "select_metric", "backbone_weights", "freeze_backbone", "trainable_backbone_tail")
    return [f"| {k} | {recipe[k]} |" for k in keys if k in recipe]  # records from before a key existed lack it


def calibration_lines(summary: dict) -> list[str]:
    """How far each file's probabilities can be taken at their word (fer_explain.calibration), as the app shows them:
    one view when the recipe evaluates with flip TTA. Nothing for an evaluation from before calibration was kept."""
    split, parts = summary["split"], []
    for variant in ("full", "baseline"):
        e = summary["files"][variant]["evaluation"]
        c = e.get("single_view_calibration") or (None if e.get("flip_tta") else e.get("calibration"))
        if c is None:
            return []
        parts.append(f"{variant} ECE {pct(c['ece'])} % (mean confidence {pct(c['mean_confidence'])} % for "
                     f"{pct(c['accuracy'])} % accuracy)")
    temperatures = {v: summary["files"][v]["evaluation"].get("temperature", 1.0) for v in ("full", "baseline")}
    scaled = ("" if set(temperatures.values()) == {1.0} else
              " Each file records a temperature fitted on val (`python -m fer_explain calibrate`, run by "
              "training.ship): " + ", ".join(f"{v} T = {t:.3g}" for v, t in temperatures.items())
              + "; the app, `predict`, `explain` and `evaluate` divide the logits by it, which changes no decision.")
    return ["", f"Calibration on {split}, one view as the app shows it (`python -m fer_explain evaluate`; "
            f"{summary['files']['full']['evaluation']['calibration']['n_bins']} equal-width bins of the predicted "
            f"class's probability): {'; '.join(parts)}. A probability above the accuracy it comes true with is "
            "overconfident, one below it underconfident; `evaluate --out` draws the reliability diagram." + scaled]


def decision_rule_lines(summary: dict, study: dict | None) -> list[str]:
    """The prior-correction option and its figures for these files, from results/prior_correction.json (`study`,
    written by training.prior_correction) matched by sha256; without a match, the commands that measure it."""
    files = {v: summary["files"][v] for v in ("full", "baseline")}
    lines = ["", "## Decision rule", "",
             "The files decide as trained, argmax p(y|x): every figure above. `--prior-correction TAU` (`predict`, "
             "`explain`, `evaluate`) and the app's slider decide argmax log p(y|x) − τ·log π_y instead, π being "
             "the training class frequencies under Data (post-hoc logit adjustment, `fer_explain/decision.py`), p "
             "the probabilities as the files show them (calibrated, when they record a temperature): the rare "
             "classes are named more often, at some cost in overall accuracy; the maps of a class do not change."]
    entries = {m.get("sha256"): m for m in (study or {}).get("models", [])}
    if not all(f["sha256"] in entries for f in files.values()):
        paths = " ".join(f"checkpoints/{f['file']}" for f in files.values())
        return lines + ["", "Not measured for these files yet: `python -m training.prior_correction --checkpoints "
                        f"{paths} --data ../shared/data/ferplus --out results`, then `training.ship` again to "
                        "rewrite this card."]
    views = "flip TTA" if study.get("flip_tta") else "one view, as the app and `evaluate` by default"
    lines += ["", f"Measured on these files (test split, {views}; τ chosen on val for the best mean class accuracy; "
              "`results/prior_correction.md`, from `python -m training.prior_correction`):", "",
              "| model | τ | test accuracy | mean class acc. | macro F1 | contempt | disgust | fear |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, f in files.items():
        entry = entries[f["sha256"]]
        for decision, tau in (("as_trained", 0), ("balanced", entry["tau"])):
            m = entry["test"][decision]
            lines.append(f"| {variant} | {tau:g} | {pct(m['accuracy'])} | {pct(m['mean_class_accuracy'])} | "
                         f"{pct(m['macro_f1'])} | " + " | ".join(pct(m["recall"][c]) for c in
                                                                  ("contempt", "disgust", "fear")) + " |")
    return lines


def card_markdown(summary: dict, records: list[Record], pair: dict, prior_correction: dict | None = None) -> str:
    split = summary["split"]
    full, baseline = pair["full"], pair["baseline"]
    group = by_variant(records)[(pair["recipe"], pair["backbone"])]
    data = full.data
    lines = ["# Checkpoints: the default pair", "",
             "Written by `python -m training.ship`; do not edit by hand. The app and the CLI load these two files "
             "by default (the baseline's file name contains `baseline`).", "",
             "| file | model | run | bytes | sha256 |", "|---|---|---|---:|---|"]
    for variant, record in (("full", full), ("baseline", baseline)):
        f = summary["files"][variant]
        kind = "Bi-LSTM (full)" if variant == "full" else "baseline (GAP instead of Bi-LSTM)"
        lines.append(f"| `{f['file']}` | {record.backbone} {kind} | `{record.name}` | {f['bytes']:,} "
                     f"| `{f['sha256']}` |")
    lines += ["", f"Together {summary['total_bytes'] / 1e6:.1f} MB. Weights are stored in **float16** (the model runs "
              "in float32 after loading)."]
    lines += ["", "## Data", "",
              f"FER+ (FER2013 48x48 gray faces with the FERPlus majority labels), {data.get('format', '?')} layout. "
              "Training on the train split"
              + (" with the annotators' vote distributions as targets (`soft_labels`)"
                 if full.training["recipe"].get("soft_labels") else "")
              + "; each run's best epoch chosen on the val split (majority labels); the test split used only "
              "for the figures below. FER2013 images are research-only and are not in this repository.", ""]
    train = data.get("train") or {}
    if train:
        lines += [f"Train split: {train.get('n')} images, class counts {train.get('class_counts')}."]
    lines += ["", f"## Recipe: `{pair['recipe']}`", "", "| setting | value |", "|---|---|",
              *_recipe_lines(full.training["recipe"]), "",
              f"Backbone {pair['backbone']}. Seeds trained: full {sorted(group['full'])}, baseline "
              f"{sorted(group['baseline'])}. Selection: {summary['selection']['rule']}."]
    cands = ", ".join(f"{k}: {100 * v:.2f} %" for k, v in summary["selection"]["candidates"].items())
    lines += ["", f"Mean validation accuracy of the full runs per candidate (as the rule above counts them): {cands}."]
    lines += ["", "## Figures", "",
              f"| model | seed | best epoch / run | val accuracy (training) | val accuracy (evaluate) | "
              f"{split} accuracy (record) | {split} accuracy here | {split} mean class acc. | {split} macro F1 | "
              "predictions changed by float16 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, record in (("full", full), ("baseline", baseline)):
        f = summary["files"][variant]
        e = f["evaluation"]
        lines.append(f"| {variant} | {record.seed} | {record.training['best_epoch']} / {record.training['epochs_run']} "
                     f"| {pct(record.val['accuracy'])} | {pct(record.evaluated_val_accuracy)} "
                     f"| {pct(f['reference']['accuracy'])} "
                     f"({f['reference']['device']}) | {pct(e['accuracy'])} ({e['device_name']}) | "
                     f"{pct(e['mean_class_accuracy'])} | {pct(e['macro_f1'])} | "
                     f"{f['predictions_changed']} of {e['n']} |")
    # a flip-TTA evaluation also holds the unflipped view's accuracy: what `evaluate` by default and the app compute
    no_tta = {v: summary["files"][v]["evaluation"].get("single_view_accuracy") for v in ("full", "baseline")}
    if None not in no_tta.values():
        lines += ["", f"The recipe evaluates with horizontal-flip test-time augmentation (the figures above). Without "
                  f"it, which is what `python -m fer_explain evaluate` computes unless given `--flip-tta` and what the "
                  f"app shows, {split} accuracy here is {pct(no_tta['full'])} % (full) and {pct(no_tta['baseline'])} % "
                  "(baseline)."]
    lines += calibration_lines(summary)
    lines += ["", f"Over all seeds of this recipe and backbone ({split}, mean ± std):", "",
              "| model | seeds | accuracy | mean class acc. | macro F1 |", "|---|---:|---:|---:|---:|"]
    for variant in ("full", "baseline"):
        runs = [r.evals[split] for r in group[variant].values() if split in r.evals]
        cut = seeds_cell(len(runs), sum(r.time_limited for r in group[variant].values()))
        lines.append(f"| {variant} | {cut} | " + " | ".join(pct(stats([m[k] for m in runs])) for k in
                                                                 ("accuracy", "mean_class_accuracy", "macro_f1"))
                     + " |")
    recipe = full.training["recipe"]
    weights = f" --backbone-weights {pair['backbone']}={recipe['backbone_weights']}" if recipe.get("backbone_weights") \
        else ""
    if recipe.get("freeze_backbone"):  # a CPU recipe: everything runs on this machine
        where, train_dir, eval_dir, folder = "# any machine, CPU included", "../shared/data/ferplus", \
            "../shared/data/ferplus", "runs"
    else:
        where, train_dir, eval_dir, folder = "# on a GPU machine (docs/gpu_runs.md: exact calls, time limits)", \
            "data/ferplus", "DIR_WITH_TEST", "weights"
    back = ["# here", f"tar -xzf {folder}/records.tar.gz -C results/runs"]
    out = f"--pack {folder}/records.tar.gz --export-weights {folder}/export"
    cut_runs = [r.name for v in ("full", "baseline") for r in group[v].values() if r.time_limited]
    if cut_runs:
        lines += ["", f"Stopped by the time limit before the recipe's last epoch: {', '.join(cut_runs)} "
                  "(`results/training_runs.md`: epochs, concurrency). How far such a run gets depends on the machine "
                  "and on what shares it; the command below, without `--time-limit`, trains every run to the end."]
    lines += ["", "Per-class figures, confusion matrices and the Bi-LSTM's effect over seeds: `results/`."]
    lines += decision_rule_lines(summary, prior_correction)
    lines += ["", "## Reproduce", "", "```bash", where,
              f"python -m training.study --config training/configs/{pair['recipe']}.yaml --data {train_dir} \\",
              f"    --backbones {pair['backbone']} --variants full baseline --seeds "
              f"{' '.join(map(str, sorted(group['full'])))} --runs-dir runs --eval-data {eval_dir} \\",
              f"   {weights} {out}", *back,
              "python -m training.results --records results/runs --cost results/cost --probes results/probes "
              "--bench results/bench --out results --readme README.md",
              f"python -m training.ship --records results/runs --weights {folder}/export --data ../shared/data/ferplus",
              f"python -m fer_explain evaluate --checkpoint checkpoints/{summary['files']['full']['file']} "
              f"--data ../shared/data/ferplus --split {split} --device cpu",
              "```", "",
              "## Limitations", "",
              "Trained on 48x48 gray FER2013 faces: photos are read in gray at that resolution. FER2013's "
              "demographic balance is unknown; disgust, contempt and fear have few examples and the weakest figures. "
              "An expression is not an emotion. Not for decisions about people.", ""]
    return "\n".join(lines)
