"""The answers to the paper's question that results/README.md and the README quote, written from the tables alone:
does the Bi-LSTM help (Table II's paired effect), and what does removing each attention module or the class weights
do (Table III), each judged against seed noise.

Seed noise is the spread of a figure over training seeds on the one fixed test split; it leaves out the test set's
own sampling error. With three seeds a t-test leans on the differences being roughly normal, and the seed spread
itself is uncertain: the verdicts say so by the numbers they use (Student-t quantiles, Holm's correction).
"""
from __future__ import annotations

from training.tables_markdown import pct, unequal_training_text

OTHER_EFFECTS = (("macro_f1", "macro F1"), ("mean_class_accuracy", "mean class accuracy"))


def p_text(value: float) -> str:
    """A p-value to two significant figures, as every verdict quotes it."""
    return f"{value:.2g}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def effect_verdict(e: dict) -> str:
    """Whether a paired effect (training.tables._paired, with holm_adjust's fields) is beyond seed noise. Several
    recipes each test the same question, so the verdict uses the Holm-adjusted p, and says when only the recipe's
    own p is under 0.05."""
    if e["p_value"] is None:
        return "too few seeds to judge against seed noise" if e["n"] < 2 else "no t-test (zero variance)"
    test = f"paired t-test over {e['n']} seeds, p = {p_text(e['p_value'])}"
    if e["family_size"] > 1:
        test += f", {p_text(e['p_holm'])} after Holm's correction for the {e['family_size']} recipes compared"
    if e["p_holm"] < 0.05:
        return f"beyond seed noise ({test})"
    if e["p_value"] < 0.05:
        return f"beyond seed noise for this recipe taken alone but not once the other recipes are counted ({test})"
    return f"not distinguishable from seed noise ({test})"


def bilstm_answer(table2: dict, selected: dict | None) -> str:
    """Does the Bi-LSTM help, by how much, on which classes, beyond seed noise? One paragraph per recipe/backbone."""
    if not table2["groups"]:
        return "No recipe/backbone has both Bi-LSTM and baseline runs yet, so the question is open."
    parts = []
    for g in table2["groups"]:
        e = g["bilstm_effect"]["accuracy"]
        unequal = unequal_training_text(g)
        if e["mean"] is None:
            if unequal:
                parts.append(f"**{g['recipe']} recipe, {g['backbone']}:** no {table2['split']} comparison: "
                             f"{unequal[0].lower()}{unequal[1:]}")
            continue
        spread = (f"{pct(e['std'])} pp std over {e['n']} seeds" if e["std"] is not None
                  else "a single seed, so no spread")
        # accuracy is dominated by neutral and happy; the balanced metrics can tell another story
        others = [f"{name} {pct(o, True)} pp" + (f" (p = {p_text(o['p_value'])})" if o["p_value"] is not None else "")
                  for m, name in OTHER_EFFECTS if (o := g["bilstm_effect"].get(m)) and o["mean"] is not None]
        deltas = [(r["difference_accuracy"], r["class"]) for r in g["rows"] if r["difference_accuracy"] is not None]
        gains = ", ".join(f"{c} {pct(d, True)}" for d, c in sorted(deltas, reverse=True)[:2] if d > 0) or "none"
        losses = ", ".join(f"{c} {pct(d, True)}" for d, c in sorted(deltas)[:2] if d < 0) or "none"
        parts.append(f"**{g['recipe']} recipe, {g['backbone']}:** the Bi-LSTM changes {table2['split']} accuracy by "
                     f"{pct(e['mean'], True)} pp ({spread}; {e['favouring_bilstm']} of {e['n']} seeds favour it), "
                     f"{effect_verdict(e)}." + (f" {_sentence(', '.join(others))}." if others else "")
                     + f" Largest per-class gains: {gains}; largest losses: {losses} (pp of class accuracy, "
                     "mean over the same paired seeds; the rare classes have few test images, so their changes are "
                     "noisy)." + (f" {unequal}" if unequal else ""))
    if any(g["bilstm_effect"]["accuracy"]["p_value"] is not None for g in table2["groups"]):
        parts.append("Seed noise here is the spread over training seeds on the one test split (the split's own "
                     "sampling error comes on top); each recipe's t-test is another try at the same question, which "
                     "Holm's correction accounts for.")
    if selected:
        parts.append(f"Shipped pair (chosen on validation): {selected['recipe']} recipe, {selected['backbone']}, "
                     f"Bi-LSTM seed {selected['full']}, baseline seed {selected['baseline']}.")
    return "\n\n".join(parts)


def t_quantile_95(seeds: int) -> float:
    """Two-sided 95 % Student-t quantile for a std measured over `seeds` runs (seeds - 1 degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.975, seeds - 1))


def noise_band(full_accuracy: dict) -> float | None:
    """The largest |variant - full| accuracy difference on one seed that seed noise explains 95 % of the time: the
    difference of two runs has std √2·σ, σ the full model's std over its k seeds; σ from so few seeds is itself
    uncertain, hence the Student-t quantile for k - 1 degrees of freedom instead of 2 (4.30 for three seeds). A mean
    over n paired seeds gets the band over √n. None without a spread (one seed)."""
    if full_accuracy.get("std") is None or full_accuracy["n"] < 2:
        return None
    return t_quantile_95(full_accuracy["n"]) * 2 ** 0.5 * full_accuracy["std"]


def ablation_verdict(d: dict, band: float | None) -> tuple[bool | None, str]:
    """Whether one ablation's mean difference from the full model (`d`, Table III's vs_full accuracy) is within seed
    noise, and the test it rests on: the paired t-test with two or more seeds, else noise_band (None: no judge)."""
    if d.get("p_value") is not None:
        return d["p_value"] >= 0.05, f"paired t-test p = {p_text(d['p_value'])}"
    if band is not None:
        return abs(d["mean"]) < band / len(d["seeds"]) ** 0.5, "noise band"
    return None, ""


def short_effect_verdict(e: dict) -> str:
    """effect_verdict in a few words, for a table cell."""
    if e["p_value"] is None:
        return "too few seeds to judge" if e["n"] < 2 else "no t-test (zero variance)"
    if e["p_holm"] < 0.05:
        return "beyond seed noise"
    if e["p_value"] < 0.05:
        return "beyond seed noise for this recipe alone, not once the others are counted"
    return "within seed noise"


def ablation_answer(table3: dict) -> str:
    """What removing each part does: each ablation's accuracy minus the full model's on the same seeds. Judged by a
    paired t-test of the per-seed differences where there are two or more, since the variant's own spread over seeds
    can be far larger than the full model's (a run that early stopping ends at epoch 4); with one seed, against
    noise_band, the only spread there is. One paragraph per recipe/backbone; '' when there is no ablation."""
    split, parts = table3["split"], []
    for g in table3["groups"]:
        rows = {r["variant"]: r for r in g["rows"]}
        full = rows["full"][split]["accuracy"] if "full" in rows else {"std": None, "n": 0}
        band = noise_band(full)
        bands_used, tested = set(), False
        items = []
        for variant, r in rows.items():
            d = (r["vs_full"] or {}).get("accuracy")
            if variant in ("full", "baseline") or d is None or d["mean"] is None:
                continue
            seeds = d["seeds"]
            within, test = ablation_verdict(d, band)
            if test == "noise band":
                bands_used.add(len(seeds))
                test = ""
            elif test:
                tested, test = True, f"; {test}"
            verdict = "" if within is None else " (within seed noise)" if within else " (beyond seed noise)"
            # accuracy alone would hide a trade: a variant can gain accuracy on the common classes by losing the
            # rare ones, which macro F1 and mean class accuracy show
            others = [f"{name} {pct(r['vs_full'][m], True)} pp" for m, name in OTHER_EFFECTS
                      if (r["vs_full"].get(m) or {}).get("mean") is not None]
            items.append(f"{r['description']} (`{variant}`) {pct(d, True)} pp{verdict}"
                         + "".join(f", {o}" for o in others)
                         + f" ({'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}{test})")
        if not items:
            continue
        noise = "" if not tested else (
            " With two or more seeds the verdict is a two-sided paired t-test of the per-seed differences (beyond "
            "seed noise when p < 0.05; each variant on its own, not corrected for the variants compared), which "
            "counts the variant's spread over seeds as well as the full model's.")
        noise += "" if not bands_used else (
            f" {'Without a t-test (one seed, or no spread), a' if tested else 'A'} difference counts as seed noise "
            f"when it is under t·√2·σ/√n: σ is the full model's std over its {full['n']} seeds "
            f"({pct(full['std'])} pp), t = {t_quantile_95(full['n']):.2f} the two-sided 95 % Student-t quantile for "
            f"{full['n'] - 1} degrees of freedom (a σ from {full['n']} seeds is itself uncertain), and n the seeds "
            "the difference is a mean of: "
            + ", ".join(f"{pct(band / n ** 0.5)} pp for {n} seed{'s' if n > 1 else ''}" for n in sorted(bands_used))
            + ".")
        parts.append(f"**Ablation, {g['recipe']} recipe, {g['backbone']}** ({split} accuracy minus the full model's "
                     f"on the same seeds, Table III; the noise verdict is on accuracy): " + "; ".join(items) + "."
                     + noise)
    return "\n\n".join(parts)
