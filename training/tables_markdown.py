"""Markdown for the results tables of training.tables (values in %, mean ± sample std over seeds); the answers to
the paper's question that the README quotes are in training.verdicts."""
from __future__ import annotations

from training.tables import EFFECT_METRICS, SUMMARY_METRICS

TITLES = {"accuracy": "accuracy", "macro_precision": "macro precision", "macro_recall": "macro recall",
          "macro_f1": "macro F1", "mean_class_accuracy": "mean class accuracy"}
VAL_COLUMNS = ("val accuracy (training): what training recorded at the kept epoch; for recipes that cache "
               "bfloat16 backbone features it can differ by more than 1 pp from what the float32 checkpoint gets. "
               "val accuracy (evaluate): the checkpoint evaluated as `fer_explain evaluate` does, the figure the "
               "shipped pair is chosen on when every candidate run has it (`selection.json` says which).")


def pct(value, signed: bool = False) -> str:
    """A fraction as %, or a stats dict as mean ± std (no ± with one seed); '-' when there is nothing."""
    if isinstance(value, dict):
        if value["mean"] is None:
            return "-"
        std = value["std"]
        return f"{100 * value['mean']:{'+' if signed else ''}.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")
    return "-" if value is None else f"{100 * value:{'+' if signed else ''}.2f}"


def markdown_table(intro: str, columns: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """A Markdown table after its one-paragraph introduction; `align` has one letter per column, l(eft) or r(ight)."""
    rule = "|".join("---:" if a == "r" else "---" for a in align)
    return [intro, "", f"| {' | '.join(columns)} |", f"|{rule}|", *(f"| {' | '.join(r)} |" for r in rows)]


def seeds_cell(n: int, time_limited: int) -> str:
    """A table's seed count, with how many of those runs the time limit stopped early."""
    return f"{n}" + (f" ({time_limited} cut by the time limit)" if time_limited else "")


def table1_markdown(t: dict) -> str:
    split, metrics = t["split"], SUMMARY_METRICS
    lines = [f"# Table I: overall results on FER+ {split}", "",
             f"Values in %, mean ± sample std over seeds. Each run's epoch was chosen on validation; `{split}` was "
             f"never used to choose anything. {VAL_COLUMNS}", "",
             "| recipe | backbone | variant | seeds | " + " | ".join(TITLES[m] for m in metrics)
             + " | val accuracy (training) | val accuracy (evaluate) |",
             "|---|---|---|---|" + "---:|" * (len(metrics) + 2)]
    for r in t["rows"]:
        seeds = seeds_cell(len(r["seeds"]), len(r.get("time_limited_seeds", [])))
        lines.append(f"| {r['recipe']} | {r['backbone']} | {r['variant']} | {seeds} | "
                     + " | ".join(pct(r[split][m]) for m in metrics)
                     + f" | {pct(r['val_accuracy'])} | {pct(r['val_accuracy_evaluate'])} |")
    # the claimed row belongs in the table, above the notes (a row after a paragraph is not a table row)
    for c in t["claims"]:
        lines.append(f"| **claim** | {c['model']} | full | - | {pct(c['accuracy'])} (claimed, not measured) | "
                     + " | ".join("-" for _ in metrics[1:]) + " | - | - |")
    lines += ["", "Mean class accuracy is the mean of the per-class recalls, so it equals macro recall. Macro "
              "precision counts a class the model never predicts as precision 0, so it jumps between seeds when a "
              "rare class such as contempt is predicted a few times or never; macro F1 moves less."]
    if any(r.get("time_limited_seeds") for r in t["rows"]):
        lines += ["", "Cut by the time limit: those runs stopped before their recipe's last epoch, at their best epoch "
                  "so far (`training_runs.md` gives each run's epochs); their means are of shorter trainings."]
    return "\n".join(lines) + "\n"


def effect_line(e: dict) -> str:
    per_seed = ", ".join(f"s{s}: {pct(d, True)}" for s, d in zip(e["seeds"], e["differences"]))
    p = "n/a" if e["p_value"] is None else f"{e['p_value']:.3g}"
    holm = "n/a" if e.get("p_holm") is None else f"{e['p_holm']:.3g} ({e['family_size']} recipes)"
    return f"{per_seed or '-'} | {pct(e, True)} | {e['favouring_bilstm']} of {e['n']} | {p} | {holm}"


def unequal_training_text(g: dict) -> str:
    """Which seed pairs the time limit cut at unequal epochs, and how the two compare on validation where both were."""
    if not g.get("unequal_training"):
        return ""
    left = "; ".join(f"seed {u['seed']} (Bi-LSTM {u['full_epochs']} epochs, baseline {u['baseline_epochs']})"
                     for u in g["unequal_training"])
    text = f"Left out of the paired figures, stopped by the time limit at unequal epochs: {left}."
    m = g["matched_epoch_val"]
    if m and m["rows"]:
        per_seed = ", ".join(f"seed {r['seed']} at epoch {r['epoch']}: {pct(r['full'])} vs {pct(r['baseline'])}"
                             for r in m["rows"])
        text += (f" At the last epoch both runs reached, val accuracy Bi-LSTM vs baseline: {per_seed} "
                 f"(full − baseline {pct(m, True)} pp).")
    return text


def _class_table(rows: list[dict], claims: dict) -> list[str]:
    lines = ["| class | support | full acc. | baseline acc. | Δ acc. | full F1 | baseline F1 | Δ F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        claim = claims.get(r["class"])
        note = f" (paper claims {pct(claim)}, not measured)" if claim is not None else ""
        lines.append(f"| {r['class']}{note} | {r['support'] if r['support'] is not None else '-'} | "
                     f"{pct(r['full_accuracy'])} | {pct(r['baseline_accuracy'])} | "
                     f"{pct(r['difference_accuracy'], True)} | {pct(r['full_f1'])} | {pct(r['baseline_f1'])} | "
                     f"{pct(r['difference_f1'], True)} |")
    return lines


def table2_markdown(t: dict) -> str:
    split = t["split"]
    lines = [f"# Table II: per class, Bi-LSTM (full) vs baseline, FER+ {split}", "",
             "Per-class accuracy (= recall) and F1 in %, means over the seeds that both variants have; "
             "Δ = full − baseline."]
    pair = t.get("shipped_pair")
    if pair:  # no "## " heading: it stays on top when the app moves the shipped recipe's section first
        same = pair["full_run"].rsplit("/", 1)[1] == pair["baseline_run"].rsplit("/", 1)[1]
        lines += ["", f"**The shipped pair's two files** (`{pair['full_run']}` and `{pair['baseline_run']}`), as the "
                  "app sets them side by side. " + ("One seed pair: one paired comparison." if same else
                                                    "Different seeds: these Δ mix the Bi-LSTM's effect with seed "
                                                    "noise; the paired figures are in the sections below."), "",
                  *_class_table(pair["rows"], t["claims"])]
    for g in t["groups"]:
        lines += ["", f"## {g['recipe']} recipe, {g['backbone']}", "",
                  f"Seeds: {', '.join(map(str, g['seeds'])) or 'none evaluated and trained alike in both variants'}."
                  + (f" {unequal_training_text(g)}" if g.get("unequal_training") else "")]
        if not g["seeds"]:
            continue
        lines += ["", *_class_table(g["rows"], t["claims"]),
                  "", f"Bi-LSTM effect (full − baseline, paired by seed, {split}):", "",
                  "| metric | per-seed differences | mean ± std | seeds favouring Bi-LSTM | paired t-test p "
                  "| p, Holm-adjusted over the recipes |", "|---|---|---:|---:|---:|---:|"]
        notes: dict[str, list[str]] = {}
        for metric, e in g["bilstm_effect"].items():
            lines.append(f"| {TITLES[metric]} | {effect_line(e)} |")
            if e["note"]:
                notes.setdefault(e["note"], []).append(TITLES[metric])
        lines += [f"\nNo paired t-test for {', '.join(m)}: {note}." for note, m in notes.items()]
    if not t["groups"]:
        lines += ["", "No recipe/backbone has both full and baseline runs yet."]
    return "\n".join(lines) + "\n"


def table3_markdown(t: dict) -> str:
    split = t["split"]
    lines = [f"# Table III: ablation, FER+ {split}", "", f"Values in %, mean ± sample std over seeds. {VAL_COLUMNS}"]
    for g in t["groups"]:
        lines += ["", f"## {g['recipe']} recipe, {g['backbone']}", "",
                  f"| variant | seeds | {split} accuracy | {split} macro F1 | {split} mean class acc. "
                  f"| Δ {split} accuracy vs full | Δ {split} macro F1 vs full "
                  "| val accuracy (training) | val accuracy (evaluate) |", "|---|" + "---:|" * 8]
        for r in g["rows"]:
            lines.append(f"| {r['description']} (`{r['variant']}`) | {len(r['seeds'])} | "
                         + " | ".join(pct(r[split][m]) for m in EFFECT_METRICS)
                         + "".join(f" | {_versus_full(r['vs_full'], m)}" for m in ("accuracy", "macro_f1"))
                         + f" | {pct(r['val_accuracy'])} | {pct(r['val_accuracy_evaluate'])} |")
    if t["groups"]:
        lines += ["", "Δ vs full: the variant minus the full model on the seeds both have (listed), in pp; mean ± "
                  "std when there are several. Whether a Δ is beyond seed noise is judged in the Ablation section "
                  "of results/README.md: by a paired t-test of the per-seed differences where there are two or more "
                  "seeds (its p is in table3_ablation.json), else against the full model's spread (t·√2·σ/√n)."]
    else:
        lines += ["", "No ablation runs yet."]
    return "\n".join(lines) + "\n"


def _versus_full(differences: dict | None, metric: str) -> str:
    if differences is None:
        return "(reference)"
    d = differences[metric]
    if not d["seeds"]:
        return "- (no common seed)"
    return f"{pct(d, signed=True)} (s{', s'.join(map(str, d['seeds']))})"


def table4_markdown(t: dict) -> str:
    lines = ["# Table IV: cost", "",
             "FLOPs at batch 1 and 224x224 include the Bi-LSTM, counted analytically (torch's counter sees 0 for "
             "nn.LSTM on CPU; on CUDA its own LSTM count is replaced by the analytic one). Latency: median of "
             "timed runs after warm-up, inference mode, BatchNorm folded; bf16 autocast "
             "on CUDA, float32 on CPU.", "",
             "| model | device | params (M) | GFLOPs (of which LSTM) | batch 1 ms | batch 64 ms | batch 64 img/s | "
             "peak GPU MiB @64 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in t["rows"]:
        device = r["device"] + ("" if r["device"] != "cpu" else f" ({r['cpu_threads']} threads)")
        peak = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(f"| {r['backbone']} {r['variant']} | {device} | {r['params'] / 1e6:.2f} | "
                     f"{'-' if r['gflops'] is None else format(r['gflops'], '.2f')} ({r['gflops_lstm']:.2f}) | "
                     f"{r['latency_ms'].get('1', float('nan')):.2f} | "
                     f"{r['latency_ms'].get('64', float('nan')):.1f} | {r['images_per_s'].get('64', float('nan')):.0f} "
                     f"| {peak} |")
    c = t["claims"]
    if any(r["gflops"] is None for r in t["rows"]):
        lines[2] += (" GFLOPs '-': measured on CUDA before the counter's own LSTM count was replaced, so those files "
                     "count the Bi-LSTM twice; FLOPs do not depend on the device: see the CPU row of the same model.")
    lines.append(f"| **claim**: paper's model | - | {c['params'] / 1e6:.1f} (claimed) | {c['gflops']:.1f} (claimed) "
                 "| - | - | - | - |")
    return "\n".join(lines) + "\n"


_PART_NAMES = {"sequence": "Bi-LSTM"}  # the model's attribute names (fer_explain/model.py) as the paper names them


def cost_summary_markdown(t: dict, folder: str = "cost/") -> str:
    """Table IV's size and FLOPs, once per model (they do not depend on the device), beside the paper's claim: the
    README's cost block."""
    firsts = {}
    for r in t["rows"]:
        if r["gflops"] is not None:
            firsts.setdefault((r["backbone"], r["variant"]), r)
    lines = ["| model | parameters | of which | GFLOPs at 224×224 | file |", "|---|---:|---|---:|---|"]
    for (backbone, variant), r in sorted(firsts.items(), key=lambda kv: (kv[0][0] != "resnet50", kv[0])):
        names = {k: _PART_NAMES.get(k, k.replace("_", " ")) for k in r["params_parts"]}
        parts = " / ".join(f"{names[k]} {v / 1e6:.2f}M" if v >= 1e4 else f"{names[k]} {v}"
                           for k, v in r["params_parts"].items() if v)
        lstm = f" = {r['gflops'] - r['gflops_lstm']:.2f} counted + {r['gflops_lstm']:.2f} Bi-LSTM (analytic)" \
            if r["gflops_lstm"] else ""
        lines.append(f"| {backbone} {'Bi-LSTM' if variant == 'full' else variant} | {r['params']:,} | {parts or '-'} | "
                     f"{r['gflops']:.2f}{lstm} | [`{r['file']}`]({folder}{r['file']}) |")
    paper = firsts.get(("resnet50", "full"))
    if paper is not None:
        c = t["claims"]
        lines += ["", f"The paper claims {c['params'] / 1e6:.1f}M parameters and {c['gflops']:.1f} GFLOPs. The network "
                  f"it describes (resnet50 Bi-LSTM) measures {paper['params'] / 1e6:.1f}M and {paper['gflops']:.1f} G."]
    return "\n".join(lines) + "\n"


def training_markdown(t: dict) -> str:
    lines = ["# Training runs: throughput and wall time", "",
             "images/s: training images per second over the run's epochs (augmentation included, validation "
             "excluded), while `parallel` runs shared the device. train acc.: the last epoch's accuracy on its "
             "(augmented) training batches; val acc.: the best epoch's, the one kept, as training measured it and as "
             "`fer_explain evaluate` measures its checkpoint.", "",
             "| run | device | batch | epochs run / planned | best epoch | train acc. % (last epoch) | "
             "val acc. % (best) | val acc. % (evaluate) | images/s | wall time (s) | parallel | stopped by |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in t["rows"]:
        stop = ("early stop" if r["early_stopped"] else "time limit" if r["time_limited"]
                else "study deadline (killed mid-epoch)" if r.get("stopped_by_study") else "-")
        rate = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.0f}"
        acc = [pct(r.get(k)) for k in ("train_accuracy_last", "val_accuracy_best", "val_accuracy_evaluate")]
        lines.append(f"| {r['run']} | {r['device']} | {r['batch_size']} | {r['epochs_run']} / {r['epochs_planned']} | "
                     f"{r['best_epoch']} | {acc[0]} | {acc[1]} | {acc[2]} | {rate} | {r['wall_time_s']:.0f} | "
                     f"{r['parallel'] or '-'} | {stop} |")
    if t.get("val_gap"):
        lines += ["", *markdown_table(
            "Runs on cached frozen-backbone features: `evaluate`'s val accuracy (the float32 network on the images) "
            "minus training's (on the cache), in pp.", ["cached features", "runs", "mean ± std", "min", "max"],
            "lrrrr",
            [[g["features"], str(g["n"]), pct(g, signed=True), pct(g["min"], signed=True), pct(g["max"], signed=True)]
             for g in t["val_gap"]])]
    if t.get("shared_device"):
        lines += ["", *markdown_table(
            "Runs trained side by side share the device: the sum of the first `parallel` runs' images/s approximates "
            "what the device did in all (an upper bound where they did not fully overlap).",
            ["recipe", "backbone", "device", "parallel", "runs", "sum of images/s"], "lllrrr",
            [[g["recipe"], g["backbone"], g["device"], str(g["parallel"]), str(g["runs"]),
              f"{g['sum_images_per_s']:.0f}"] for g in t["shared_device"]])]
    if t["probes"]:
        lines += ["", "## Throughput probes (`python -m training.throughput`)", "",
                  "| backbone | variant | device | batch | precision | compiled | images/s |",
                  "|---|---|---|---:|---|---|---:|"]
        for p in t["probes"]:
            for row in p["rows"]:
                lines.append(f"| {p['backbone']} | {p['variant']} | {p['device']} | {row['batch_size']} | "
                             f"{p['amp']} | {p['compile']} | {row['images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"
