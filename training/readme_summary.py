"""The README's short results block: the answer to the paper's question ("does the Bi-LSTM help?") as one row per
recipe and backbone from Table II's paired effect, and the ablation as one row per variant from Table III. The
reasoning behind each verdict, sentence by sentence, stays in results/README.md (training.verdicts); both are
written from the same tables by `python -m training.results`."""
from __future__ import annotations

from training.tables import stats
from training.tables_markdown import markdown_table, pct
from training.verdicts import OTHER_EFFECTS, ablation_verdict, noise_band, p_text, short_effect_verdict


def _class_extremes(rows: list[dict]) -> str:
    """The Bi-LSTM's largest per-class gain and loss (pp of class accuracy), e.g. "gain: fear +8.14; loss: disgust
    -8.33"; "none" where no class gains (or loses)."""
    deltas = sorted((r["difference_accuracy"], r["class"]) for r in rows if r["difference_accuracy"] is not None)
    gain = f"{deltas[-1][1]} {pct(deltas[-1][0], True)}" if deltas and deltas[-1][0] > 0 else "none"
    loss = f"{deltas[0][1]} {pct(deltas[0][0], True)}" if deltas and deltas[0][0] < 0 else "none"
    return f"gain: {gain}; loss: {loss}"


def bilstm_table(table2: dict) -> list[str]:
    split, rows = table2["split"], []
    family = max((g["bilstm_effect"]["accuracy"].get("family_size") or 0 for g in table2["groups"]), default=0)
    for g in table2["groups"]:
        e, balanced = g["bilstm_effect"]["accuracy"], g["bilstm_effect"]["mean_class_accuracy"]
        if e["mean"] is None:  # the time limit cut the pair at unequal epochs: no test comparison (unequal_training)
            matched = g.get("matched_epoch_val")
            why = "not compared on test: the time limit stopped the pair at unequal epochs"
            if matched and matched.get("rows"):
                why += f" (val at the same epoch: {pct(matched, True)} pp)"
            rows.append([g["recipe"], g["backbone"], "-", "-", "-", "-", "-", "-", "-", why, "-"])
            continue
        p = "-" if e.get("p_holm") is None else p_text(e["p_holm"])
        verdict = short_effect_verdict(e)
        if g.get("unequal_training"):  # pairs the time limit cut at unequal epochs are not in the paired figures
            cut = ", ".join(str(u["seed"]) for u in g["unequal_training"])
            verdict += f"; left out (time limit, unequal epochs): seed {cut}"
        rows.append([g["recipe"], g["backbone"], str(e["n"]), pct(stats(e["full"])), pct(stats(e["baseline"])),
                     pct(e, True), f"{e['favouring_bilstm']} of {e['n']}", p, pct(balanced, True), verdict,
                     _class_extremes(g["rows"])])
    return markdown_table(
        f"FER+ {split} accuracy of the Bi-LSTM model and of its baseline (global average "
        "pooling instead of the Bi-LSTM), mean ± std over the seeds both were trained with, and their paired "
        f"difference; p: paired t-test, Holm-adjusted for the {family} recipes compared. Seed noise is the spread "
        "over training seeds on the one test split (the split's own sampling error comes on top). Classes: the "
        "largest per-class gain and loss, pp of class accuracy (the rare classes have few test faces, so theirs are "
        "noisy). Each verdict's reasoning: [`results/README.md`](results/README.md).",
        ["recipe", "backbone", "seeds", "Bi-LSTM %", "baseline %", "Bi-LSTM − baseline (pp)", "seeds favouring it",
         "p (Holm)", "Δ mean class acc. (pp)", "verdict", "classes"], "llrrrrrrrll", rows)


def ablation_table(table3: dict) -> list[str]:
    split, rows = table3["split"], []
    for g in table3["groups"]:
        variants = {r["variant"]: r for r in g["rows"]}
        full = variants["full"][split]["accuracy"] if "full" in variants else {"std": None, "n": 0}
        band = noise_band(full)
        for variant, r in variants.items():
            d = (r["vs_full"] or {}).get("accuracy")
            if variant in ("full", "baseline") or d is None or d["mean"] is None:
                continue
            within, test = ablation_verdict(d, band)
            verdict = "-" if within is None else "within seed noise" if within else "beyond seed noise"
            others = [pct(r["vs_full"][m], True) if (r["vs_full"].get(m) or {}).get("mean") is not None else "-"
                      for m, _ in OTHER_EFFECTS]
            rows.append([g["recipe"], g["backbone"], f"{r['description']} (`{variant}`)",
                         ", ".join(map(str, d["seeds"])), pct(d, True), *others,
                         verdict + (f" ({test})" if test else "")])
    if not rows:
        return []
    return markdown_table(
        f"**Ablation** (Table III): each variant's FER+ {split} figures minus the full model's on the same seeds "
        "(mean ± std over seeds, pp); the verdict is on accuracy.",
        ["recipe", "backbone", "variant", "seeds", "Δ accuracy", "Δ macro F1", "Δ mean class acc.", "verdict"],
        "lllrrrrl", rows)


def readme_block(table2: dict, table3: dict, selected: dict | None) -> str:
    """The Markdown between the README's results markers."""
    if not table2["groups"]:
        lines = ["No recipe/backbone has both Bi-LSTM and baseline runs yet, so the question is open."]
    else:
        lines = bilstm_table(table2)
    ablation = ablation_table(table3)
    if ablation:
        lines += ["", *ablation]
    if selected:
        lines += ["", f"Shipped pair (chosen on validation): {selected['recipe']} recipe, {selected['backbone']}, "
                      f"Bi-LSTM seed {selected['full']}, baseline seed {selected['baseline']}."]
    return "\n".join(lines)
