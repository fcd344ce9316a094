"""The results tables as plain dicts (the JSON files are these dicts; training.tables_markdown renders them).

    table1_overall     Table I shape: accuracy, macro precision / recall / F1, mean class accuracy per model on the
                       eval split, mean ± sample std (ddof=1) over seeds, plus the paper's claimed row marked as a
                       claim
    table2_per_class   Table II shape, per recipe/backbone: per-class accuracy (= recall) and F1 of full vs baseline
                       and full − baseline, means over the seeds both have; and the Bi-LSTM's effect: per-seed
                       paired differences, their mean ± std, a paired t-test (scipy.stats.ttest_rel) with its p
                       Holm-adjusted over the recipes compared, how many seeds favour the Bi-LSTM. Seed pairs the
                       time limit stopped at unequal epochs are left out of the paired figures
                       (training.records.trained_alike) and compared on validation at the last epoch both reached
                       instead
    table3_ablation    Table III shape: every variant of a recipe/backbone that has ablation runs, and each one's
                       difference from the full model on the seeds both have, with a paired t-test from two seeds on
    table4_cost        Table IV shape: parameters, FLOPs, latency at batch 1 and 64, peak GPU memory, from the JSON
                       files `python -m fer_explain cost --json` wrote, one row per model and device
    training_runs      per run: device, concurrency, epochs, best epoch, images/s, wall time; and the throughput probes
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_explain.classes import CLASSES
from fer_explain.errors import UserError
from training.records import Record, by_variant, trained_alike

SUMMARY_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "mean_class_accuracy")
EFFECT_METRICS = ("accuracy", "macro_f1", "mean_class_accuracy")
# The paper's figures (RAF-DB, ResNet50) were never measured here: shown as claims beside our measurements.
CLAIMS = {"overall": {"model": "paper's Bi-LSTM dual attention (ResNet50), RAF-DB", "accuracy": 0.9420},
          "per_class": {"contempt": 0.76}, "cost": {"params": 46.1e6, "gflops": 15.3}}


def stats(values: list[float]) -> dict:
    n = len(values)
    return {"mean": float(np.mean(values)) if n else None, "std": float(np.std(values, ddof=1)) if n > 1 else None,
            "n": n, "values": [float(v) for v in values]}


def _metrics(record: Record, split: str) -> dict | None:
    """The split's evaluation (eval_<split>.json); for val without one, what training recorded."""
    return record.evals.get(split) or (record.val if split == "val" else None)


def _val_accuracies(runs) -> dict:
    """Both val figures: training's own (its best epoch; on cached bfloat16 features for frozen-backbone recipes)
    and the checkpoint's as `fer_explain evaluate` computes it, for the runs that have eval_val.json."""
    return {"val_accuracy": stats([r.val["accuracy"] for r in runs]),
            "val_accuracy_evaluate": stats([v for r in runs if (v := r.evaluated_val_accuracy) is not None])}


def table1_overall(records: list[Record], split: str) -> dict:
    rows = []
    for (recipe, backbone), variants in by_variant(records).items():
        for variant, runs in variants.items():
            evaluated = [r for r in runs.values() if _metrics(r, split) is not None]
            rows.append({"recipe": recipe, "backbone": backbone, "variant": variant, "seeds": sorted(runs),
                         "time_limited_seeds": sorted(s for s, r in runs.items() if r.time_limited),
                         split: {m: stats([_metrics(r, split)[m] for r in evaluated]) for m in SUMMARY_METRICS},
                         **_val_accuracies(runs.values())})
    return {"split": split, "rows": rows, "claims": [CLAIMS["overall"]]}


def _paired_seeds(full: dict[int, Record], baseline: dict[int, Record], split: str) -> list[int]:
    """The seeds evaluated on `split` in both variants whose two runs were trained alike (equal epochs, or neither
    cut short by the time limit)."""
    return sorted(s for s in set(full) & set(baseline)
                  if _metrics(full[s], split) is not None and _metrics(baseline[s], split) is not None
                  and trained_alike(full[s], baseline[s]))


def _unequal_pairs(full: dict[int, Record], baseline: dict[int, Record]) -> list[dict]:
    """The seeds left out of the paired figures because the time limit stopped the two runs at different epochs."""
    return [{"seed": s, "full_epochs": full[s].epochs_run, "baseline_epochs": baseline[s].epochs_run}
            for s in sorted(set(full) & set(baseline)) if not trained_alike(full[s], baseline[s])]


def _val_at_epoch(record: Record, epoch: int) -> float | None:
    return next((row.get("val_accuracy") for row in record.log if row.get("epoch") == epoch), None)


def matched_epoch_val(full: dict[int, Record], baseline: dict[int, Record]) -> dict:
    """full - baseline validation accuracy per seed at the last epoch both runs' logs reached: the like-for-like
    comparison left when the time limit cut the two runs at different epochs (the same schedule up to there).
    Validation only: test figures exist for each run's best epoch, not for a chosen one."""
    rows = []
    for s in sorted(set(full) & set(baseline)):
        epoch = min(full[s].epochs_run or 0, baseline[s].epochs_run or 0)
        f, b = _val_at_epoch(full[s], epoch), _val_at_epoch(baseline[s], epoch)
        if f is not None and b is not None:
            rows.append({"seed": s, "epoch": epoch, "full": f, "baseline": b, "difference": f - b})
    return {"rows": rows, **stats([r["difference"] for r in rows])}


def _paired_t_test(diffs: list[float]) -> dict:
    """Two-sided paired t-test of per-seed differences against 0 (scipy.stats.ttest_1samp, the same test as
    ttest_rel on the two lists); t and p are None, with a note saying why, under 2 seeds or with zero variance."""
    from scipy.stats import ttest_1samp

    if len(diffs) < 2:
        return {"t": None, "p_value": None,
                "note": f"n = {len(diffs)} paired seed(s): a paired t-test needs at least 2, so no p-value"}
    if np.ptp(diffs) == 0:  # scipy gives nan for all-zero differences but p = 0 for equal non-zero ones
        return {"t": None, "p_value": None,
                "note": "the differences are identical on every seed (zero variance): the t-test is undefined"}
    result = ttest_1samp(diffs, 0.0)
    return {"t": float(result.statistic), "p_value": float(result.pvalue), "note": None}


def _seed_differences(runs: dict[int, Record], reference: dict[int, Record], split: str, metric: str) -> dict:
    """runs - reference on each seed both evaluated on `split`: mean ± std over those seeds, the seeds, and a paired
    t-test of the differences (which, unlike a band from the reference's spread alone, counts both runs' spread)."""
    seeds = _paired_seeds(runs, reference, split)
    diffs = [_metrics(runs[s], split)[metric] - _metrics(reference[s], split)[metric] for s in seeds]
    return {"seeds": seeds, **stats(diffs), **_paired_t_test(diffs)}


def _paired(full: dict[int, Record], baseline: dict[int, Record], split: str, metric: str) -> dict:
    seeds = _paired_seeds(full, baseline, split)
    a = [_metrics(full[s], split)[metric] for s in seeds]
    b = [_metrics(baseline[s], split)[metric] for s in seeds]
    diffs = [x - y for x, y in zip(a, b)]
    test = _paired_t_test(diffs)
    return {"seeds": seeds, "full": a, "baseline": b, "differences": diffs, **stats(diffs),
            "favouring_bilstm": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs),
            "t": test["t"], "p_value": test["p_value"], "p_holm": None, "family_size": None, "note": test["note"]}


def holm_adjust(effects: list[dict]) -> None:
    """Adds `p_holm` (Holm-Bonferroni adjusted p-value) and `family_size` to every effect that has a p_value. Each
    recipe's t-test asks the same question (does the Bi-LSTM help?), so with several recipes one of them falls
    under 0.05 by chance more often than 5 % of the time; Holm's step-down adjustment keeps that chance at 5 %."""
    tested = sorted((e for e in effects if e["p_value"] is not None), key=lambda e: e["p_value"])
    running = 0.0
    for rank, e in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * e["p_value"]))  # adjusted p stays monotone
        e["p_holm"], e["family_size"] = running, len(tested)


def _class_mean(runs: dict[int, Record], split: str, name: str, key: str) -> float | None:
    values = [m["per_class"][name][key] for r in runs.values() if (m := _metrics(r, split)) is not None
              and m["per_class"][name][key] is not None]
    return float(np.mean(values)) if values else None


def _class_rows(full: dict[int, Record], baseline: dict[int, Record], split: str) -> list[dict]:
    """Per class: accuracy (= recall) and F1 of full and baseline, each the mean over the runs given, and Δ."""
    supports = [m["per_class"] for r in full.values() if (m := _metrics(r, split)) is not None]
    rows = []
    for name in CLASSES:
        row = {"class": name, "support": supports[0][name]["support"] if supports else None}
        for key, label in (("recall", "accuracy"), ("f1", "f1")):
            f, b = _class_mean(full, split, name, key), _class_mean(baseline, split, name, key)
            row.update({f"full_{label}": f, f"baseline_{label}": b,
                        f"difference_{label}": None if f is None or b is None else f - b})
        rows.append(row)
    return rows


def table2_per_class(records: list[Record], split: str, shipped: tuple[Record, Record] | None = None) -> dict:
    """Per recipe/backbone over the seed pairs trained alike; and, given `shipped` (full, baseline), the shipped
    pair's own two files, which may be different seeds: what the app sets side by side, not a paired comparison."""
    groups = []
    for (recipe, backbone), variants in by_variant(records).items():
        if "full" not in variants or "baseline" not in variants:
            continue
        # per-class means over the seeds both variants have, so that each Δ compares like with like (a recipe may
        # have more baseline seeds than full ones)
        seeds = _paired_seeds(variants["full"], variants["baseline"], split)
        full = {s: variants["full"][s] for s in seeds}
        baseline = {s: variants["baseline"][s] for s in seeds}
        unequal = _unequal_pairs(variants["full"], variants["baseline"])
        groups.append({"recipe": recipe, "backbone": backbone, "seeds": seeds,
                       "rows": _class_rows(full, baseline, split),
                       "bilstm_effect": {m: _paired(full, baseline, split, m) for m in EFFECT_METRICS},
                       "unequal_training": unequal,
                       "matched_epoch_val": matched_epoch_val(variants["full"], variants["baseline"]) if unequal
                       else None})
    for metric in EFFECT_METRICS:
        holm_adjust([g["bilstm_effect"][metric] for g in groups])
    pair = None
    if shipped is not None:
        f, b = shipped
        pair = {"recipe": f.recipe, "backbone": f.backbone, "full_run": f.name, "baseline_run": b.name,
                "rows": _class_rows({f.seed: f}, {b.seed: b}, split)}
    return {"split": split, "shipped_pair": pair, "groups": groups, "claims": CLAIMS["per_class"]}


def table3_ablation(records: list[Record], split: str) -> dict:
    from training.study import VARIANTS

    groups = []
    for (recipe, backbone), variants in by_variant(records).items():
        if not set(variants) - {"full", "baseline"}:
            continue
        full = variants.get("full", {})
        rows = [{"variant": v, "description": VARIANTS.get(v, (v,))[0], "seeds": sorted(runs),
                 split: {m: stats([m_[m] for r in runs.values() if (m_ := _metrics(r, split)) is not None])
                         for m in EFFECT_METRICS},
                 # variant - full on the seeds both have: with one ablation seed, a mean over other seeds of the
                 # full model would mix the ablation's effect with seed noise
                 "vs_full": None if v == "full" else {m: _seed_differences(runs, full, split, m)
                                                      for m in EFFECT_METRICS},
                 **_val_accuracies(runs.values())}
                for v, runs in variants.items()]
        groups.append({"recipe": recipe, "backbone": backbone, "rows": rows})
    return {"split": split, "groups": groups}


def table4_cost(cost_files: list[Path]) -> dict:
    import json

    rows = []
    for path in sorted(cost_files):
        try:
            rows.append(_cost_row(path, json.loads(path.read_text())))
        except (KeyError, TypeError, ValueError) as e:  # e.g. a bench file copied into the cost folder
            raise UserError(f"{path}: not a `fer_explain cost --json` file ({type(e).__name__}: {e})") from None
    return {"rows": rows, "claims": CLAIMS["cost"]}


def _cost_row(path: Path, c: dict) -> dict:
    from fer_explain.cost import flops_trustworthy

    config = c["model_config"]
    return {"file": path.name, "backbone": config["backbone"], "variant": config["variant"], "device": c["device"],
            "precision": c["precision"], "cpu_threads": c["cpu_threads"], "params": c["params"]["total"],
            "params_parts": {k: v for k, v in c["params"].items() if k != "total"},
            "gflops": c["gflops"] if flops_trustworthy(c) else None, "gflops_lstm": c["flops_lstm_analytic"] / 1e9,
            "latency_ms": c["latency_ms"], "images_per_s": c["images_per_s"], "peak_memory_mb": c["peak_memory_mb"],
            "peak_memory_batch": c["peak_memory_batch"], "torch": c["torch"]}


def training_runs(records: list[Record], probe_files: list[Path]) -> dict:
    import json

    rows = []
    for r in records:
        t = r.training
        rows.append({"run": r.name, "device": t.get("device_name") or t.get("device"), "epochs_run": t["epochs_run"],
                     "epochs_planned": t["recipe"]["epochs"], "best_epoch": t["best_epoch"],
                     "batch_size": t["recipe"]["batch_size"], "images_per_s": t.get("mean_images_per_s"),
                     "wall_time_s": t.get("wall_time_s"), "early_stopped": t.get("early_stopped"),
                     # the last epoch's training accuracy beside the kept epoch's val accuracy, so that under- and
                     # over-fitting can be told apart from the published table
                     "train_accuracy_last": (r.log[-1].get("train_accuracy") if r.log else None),
                     "val_accuracy_best": r.val.get("accuracy"),
                     "val_accuracy_evaluate": r.evaluated_val_accuracy,
                     "time_limited": t.get("time_limited", False),
                     "stopped_by_study": bool((r.study or {}).get("stopped_overdue")
                                             and (r.study or {}).get("returncode") != 0),
                     "parallel": (r.study or {}).get("parallel"), "running_at_start": (r.study or {}).get(
                         "running_at_start"),
                     "cached_features": (r.data.get("frozen_backbone") or {}).get("features")})
    side_by_side: dict[tuple, list[float]] = {}  # runs of one study that shared the device
    for r, row in zip(records, rows):
        if row["parallel"] and row["images_per_s"]:
            side_by_side.setdefault((r.recipe, r.backbone, row["device"], row["parallel"]), []).append(
                row["images_per_s"])
    shared = [{"recipe": k[0], "backbone": k[1], "device": k[2], "parallel": k[3], "runs": len(v),
               "sum_images_per_s": sum(v[: k[3]])} for k, v in side_by_side.items() if k[3] > 1]
    probes = [json.loads(p.read_text()) for p in sorted(probe_files)]
    return {"rows": rows, "shared_device": shared, "probes": probes, "val_gap": cached_feature_val_gap(rows)}


def cached_feature_val_gap(rows: list[dict]) -> list[dict]:
    """Per precision of the cached frozen features: `evaluate`'s val accuracy of the kept checkpoint minus what
    training recorded for it. Training scores cached features, `evaluate` the float32 network on the images, so the
    two agree only where the cache holds what inference computes."""
    gaps: dict[str, list[float]] = {}
    for row in rows:
        if row["cached_features"] and None not in (row["val_accuracy_best"], row["val_accuracy_evaluate"]):
            gaps.setdefault(row["cached_features"], []).append(row["val_accuracy_evaluate"] - row["val_accuracy_best"])
    return [{"features": k, **stats(v), "min": min(v), "max": max(v)} for k, v in sorted(gaps.items())]
