"""The ablation's numbers as one dict, and its Markdown rendering (the JSON file is that same dict).

    table       Table III shape: one row per variant, accuracy / macro F1 / mean class accuracy as mean ± std
                over seeds (sample std, ddof=1), on the eval split and on val
    per_class   Table II shape: per-class accuracy (= recall) and F1 of full vs baseline, and full − baseline
    bilstm      the Bi-LSTM's effect: per-seed paired differences full − baseline, their mean ± std, a paired
                t-test (scipy.stats.ttest_rel) and how many seeds favour the Bi-LSTM
"""
from __future__ import annotations

import math

import numpy as np

from fer_explain.classes import CLASSES

SUMMARY_METRICS = ("accuracy", "macro_f1", "mean_class_accuracy")
TITLES = {"accuracy": "accuracy", "macro_f1": "macro F1", "mean_class_accuracy": "mean class accuracy"}


def _stats(values: list[float]) -> dict:
    n = len(values)
    return {"mean": float(np.mean(values)) if n else None, "std": float(np.std(values, ddof=1)) if n > 1 else None,
            "n": n, "values": [float(v) for v in values]}


def _per_class(runs: dict, split: str, name: str, key: str) -> float | None:
    values = [r[split]["per_class"][name][key] for r in runs.values() if r[split]["per_class"][name][key] is not None]
    return float(np.mean(values)) if values else None


def _paired_test(full: dict, baseline: dict, split: str, metric: str) -> dict:
    from scipy.stats import ttest_rel

    seeds = sorted(set(full) & set(baseline))
    a = [full[s][split][metric] for s in seeds]
    b = [baseline[s][split][metric] for s in seeds]
    diffs = [x - y for x, y in zip(a, b)]
    out = {"seeds": seeds, "full": a, "baseline": b, "differences": diffs, **_stats(diffs),
           "favouring_bilstm": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs),
           "t": None, "p_value": None, "note": None}
    if len(seeds) < 2:
        out["note"] = f"n = {len(seeds)} paired seed(s): a paired t-test needs at least 2, so no p-value"
        return out
    result = ttest_rel(a, b)
    if math.isnan(result.pvalue):
        out["note"] = "the differences are identical on every seed (zero variance): the t-test is undefined"
        return out
    out["t"], out["p_value"] = float(result.statistic), float(result.pvalue)
    return out


def summarise(runs: dict, descriptions: dict, eval_split: str, setup: dict) -> dict:
    """`runs[variant][seed]` = {"val": metrics, eval_split: metrics, "best_epoch": ...} -> the report dict."""
    splits = list(dict.fromkeys([eval_split, "val"]))
    table = [{"variant": variant, "description": descriptions.get(variant, variant), "n_seeds": len(by_seed),
              **{split: {m: _stats([r[split][m] for r in by_seed.values()]) for m in SUMMARY_METRICS}
                 for split in splits}}
             for variant, by_seed in runs.items()]
    per_class = bilstm = None
    if "full" in runs and "baseline" in runs:
        rows = []
        for name in CLASSES:
            row = {"class": name, "support": runs["full"][next(iter(runs["full"]))][eval_split]["per_class"][name]
                   ["support"]}
            for key, label in (("recall", "accuracy"), ("f1", "f1")):
                full, base = (_per_class(runs[v], eval_split, name, key) for v in ("full", "baseline"))
                row.update({f"full_{label}": full, f"baseline_{label}": base,
                            f"difference_{label}": None if full is None or base is None else full - base})
            rows.append(row)
        per_class = {"split": eval_split, "mean_over_seeds": True, "rows": rows}
        bilstm = {"split": eval_split, "metrics": {m: _paired_test(runs["full"], runs["baseline"], eval_split, m)
                                                   for m in SUMMARY_METRICS}}
    return {"setup": {**setup, "eval_split": eval_split}, "table": table, "per_class": per_class,
            "bilstm_effect": bilstm,
            "runs": {v: [{"seed": s, **{k: r[k] for k in ("run_dir", "best_epoch", "epochs_run")},
                          **{split: {m: r[split][m] for m in (*SUMMARY_METRICS, "per_class", "confusion_matrix")}
                             for split in splits}} for s, r in by_seed.items()] for v, by_seed in runs.items()}}


def _pct(stats_or_value, signed: bool = False) -> str:
    if isinstance(stats_or_value, dict):
        if stats_or_value["mean"] is None:
            return "-"
        std = stats_or_value["std"]
        return f"{100 * stats_or_value['mean']:{'+' if signed else ''}.2f}" + (
            f" ± {100 * std:.2f}" if std is not None else "")
    return "-" if stats_or_value is None else f"{100 * stats_or_value:{'+' if signed else ''}.2f}"


def render_markdown(results: dict) -> str:
    setup = results["setup"]
    split = setup["eval_split"]
    lines = [f"# Ablation: {setup['backbone']}", "",
             f"Recipe `{setup['config']}` ({setup['recipe']}), seeds {setup['seeds']}, up to {setup['epochs']} epochs"
             f"{', training subset of ' + str(setup['limit_train']) + ' images' if setup['limit_train'] else ''}; "
             f"{setup['selection']}; evaluated on `{split}` and `val`{' with flip TTA' if setup['flip_tta'] else ''}. "
             "Values in %, mean ± sample std over seeds (no ± with one seed).", "",
             f"## Variants (Table III shape, {split} split)", "",
             f"| variant | n seeds | {split} accuracy | {split} macro F1 | {split} mean class acc. | val accuracy |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in results["table"]:
        lines.append(f"| {row['description']} (`{row['variant']}`) | {row['n_seeds']} | "
                     + " | ".join(_pct(row[split][m]) for m in ("accuracy", "macro_f1", "mean_class_accuracy"))
                     + f" | {_pct(row['val']['accuracy'])} |")
    if results["per_class"] is None:
        lines += ["", "Per-class comparison and Bi-LSTM effect: need both `full` and `baseline` runs."]
        return "\n".join(lines) + "\n"
    lines += ["", f"## Per class, full vs baseline (Table II shape, {split} split, mean over seeds)", "",
              "| class | support | full acc. | baseline acc. | Δ acc. | full F1 | baseline F1 | Δ F1 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["per_class"]["rows"]:
        lines.append(f"| {r['class']} | {r['support']} | {_pct(r['full_accuracy'])} | {_pct(r['baseline_accuracy'])} "
                     f"| {_pct(r['difference_accuracy'], True)} | {_pct(r['full_f1'])} | {_pct(r['baseline_f1'])} "
                     f"| {_pct(r['difference_f1'], True)} |")
    lines += ["", f"## Bi-LSTM effect (full − baseline, paired by seed, {split} split)", "",
              "| metric | per-seed differences | mean ± std | seeds favouring Bi-LSTM | paired t-test p |",
              "|---|---|---:|---:|---:|"]
    notes: dict[str, list[str]] = {}  # note -> the metrics it concerns, so one reason is said once
    for metric, e in results["bilstm_effect"]["metrics"].items():
        per_seed = ", ".join(f"s{s}: {_pct(d, True)}" for s, d in zip(e["seeds"], e["differences"]))
        p = "n/a" if e["p_value"] is None else f"{e['p_value']:.3g}"
        lines.append(f"| {TITLES[metric]} | {per_seed or '-'} | {_pct(e, True)} | {e['favouring_bilstm']} of "
                     f"{e['n']} | {p} |")
        if e["note"]:
            notes.setdefault(e["note"], []).append(TITLES[metric])
    for note, metrics in notes.items():
        lines += ["", f"No paired t-test for {', '.join(metrics)}: {note}."]
    return "\n".join(lines) + "\n"
