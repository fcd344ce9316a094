"""The table arithmetic on hand-made run records: Table II's paired Bi-LSTM effect and its Holm-adjusted p, the
comparison of runs the time limit cut, choosing the pair on validation, the cached-feature val gap, and Table III's
ablation verdicts (paired t-test over seeds, or the full model's band for one seed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import ttest_rel

from training.records import Record, select_pair
from training.tables import cached_feature_val_gap, table2_per_class, table3_ablation
from training.readme_summary import readme_block
from training.tables_markdown import pct, table2_markdown
from training.verdicts import bilstm_answer

CLASSES8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")


def _record(variant: str, seed: int, val: float, test: float, recipe="paper", backbone="b",
            val_evaluated: float | None = None, epochs: list[float] | None = None, time_limited=False) -> Record:
    """`epochs`: val accuracy after each epoch (the log); the run then ran len(epochs) epochs."""
    per_class = {c: {"precision": test, "recall": test, "f1": test, "support": 1} for c in CLASSES8}
    metrics = {m: test for m in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "mean_class_accuracy")}
    metrics["per_class"] = per_class
    evals = {"test": metrics} | ({"val": {"accuracy": val_evaluated}} if val_evaluated is not None else {})
    training = {} if epochs is None else {"epochs_run": len(epochs), "time_limited": time_limited}
    log = [{"epoch": i + 1, "val_accuracy": v} for i, v in enumerate(epochs or [])]
    return Record(Path("."), recipe, backbone, variant, seed, {"accuracy": val}, evals, training, log=log)


def test_one_seed_says_the_t_test_is_impossible():
    t2 = table2_per_class([_record("full", 0, 0.5, 0.6), _record("baseline", 0, 0.5, 0.5)], "test")
    effect = t2["groups"][0]["bilstm_effect"]["accuracy"]
    assert effect["p_value"] is None and effect["mean"] == pytest.approx(0.1) and effect["favouring_bilstm"] == 1
    assert "needs at least 2" in table2_markdown(t2)
    assert "a single seed, so no spread" in bilstm_answer(t2, None)


def test_paired_effect_over_seeds_and_its_verdict():
    records = [_record("full", s, 0.5, 0.60 + 0.01 * s) for s in range(3)]
    records += [_record("baseline", s, 0.5, 0.50 + 0.012 * s) for s in range(3)]
    t2 = table2_per_class(records, "test")
    effect = t2["groups"][0]["bilstm_effect"]["accuracy"]
    assert effect["differences"] == pytest.approx([0.10, 0.098, 0.096])
    assert effect["favouring_bilstm"] == 3 and effect["p_value"] < 0.05
    assert "beyond seed noise" in bilstm_answer(t2, None)


def test_each_recipe_is_one_more_try_at_the_question_so_its_p_is_holm_adjusted():
    # recipe "b": p < 0.05 on its own (differences 1.0, 2.0, 1.6 pp); recipe "a": no effect (1.0, -1.0, 0.5 pp)
    records = []
    for recipe, diffs in (("a", [0.010, -0.010, 0.005]), ("b", [0.010, 0.020, 0.016])):
        records += [_record("full", s, 0.5, 0.70 + d, recipe=recipe) for s, d in enumerate(diffs)]
        records += [_record("baseline", s, 0.5, 0.70, recipe=recipe) for s in range(3)]
    t2 = table2_per_class(records, "test")
    effects = {g["recipe"]: g["bilstm_effect"]["accuracy"] for g in t2["groups"]}
    a, b = effects["a"], effects["b"]
    assert b["p_value"] < 0.05 < b["p_holm"] == pytest.approx(2 * b["p_value"]) and b["family_size"] == 2
    assert a["p_holm"] == pytest.approx(max(a["p_value"], b["p_holm"]))  # step-down: the larger p times 1, monotone
    text = bilstm_answer(t2, None)
    assert "beyond seed noise for this recipe taken alone but not once the other recipes are counted" in text
    assert f"p = {b['p_value']:.2g}, {b['p_holm']:.2g} after Holm's correction for the 2 recipes compared" in text
    assert "| p, Holm-adjusted over the recipes |" in table2_markdown(t2)


def test_equal_differences_on_every_seed_get_no_p_value():
    # scipy would give p = 0 here (t = inf): a certainty three seeds cannot give
    t2 = table2_per_class([_record(v, s, 0.5, 0.61 if v == "full" else 0.60) for v in ("full", "baseline")
                           for s in range(3)], "test")
    effect = t2["groups"][0]["bilstm_effect"]["accuracy"]
    assert effect["p_value"] is None and "zero variance" in effect["note"]
    assert "no t-test (zero variance)" in bilstm_answer(t2, None)


def test_runs_the_time_limit_cut_at_unequal_epochs_are_compared_on_val_at_a_shared_epoch_not_on_test():
    from training.tables import table1_overall, table3_ablation
    from training.tables_markdown import table1_markdown

    # seed 0: the slower Bi-LSTM stopped at epoch 2, its baseline ran all 4; seed 1: both ran all 4
    records = [_record("full", 0, 0.60, 0.60, epochs=[0.50, 0.60], time_limited=True),
               _record("baseline", 0, 0.80, 0.80, epochs=[0.55, 0.62, 0.70, 0.80]),
               _record("full", 1, 0.81, 0.81, epochs=[0.5, 0.6, 0.7, 0.81]),
               _record("baseline", 1, 0.80, 0.80, epochs=[0.5, 0.6, 0.7, 0.80]),
               _record("full_no_spatial", 0, 0.75, 0.75, epochs=[0.5, 0.6, 0.7, 0.75])]
    group = table2_per_class(records, "test")["groups"][0]
    assert group["seeds"] == [1] and group["bilstm_effect"]["accuracy"]["differences"] == pytest.approx([0.01])
    assert group["unequal_training"] == [{"seed": 0, "full_epochs": 2, "baseline_epochs": 4}]
    matched = group["matched_epoch_val"]  # seed 0 at epoch 2: 0.60 vs 0.62; seed 1 at epoch 4: 0.81 vs 0.80
    assert [(r["seed"], r["epoch"]) for r in matched["rows"]] == [(0, 2), (1, 4)]
    assert matched["values"] == pytest.approx([-0.02, 0.01])
    text = bilstm_answer(table2_per_class(records, "test"), None)
    assert "+1.00 pp (a single seed" in text and "seed 0 (Bi-LSTM 2 epochs, baseline 4)" in text
    assert "seed 0 at epoch 2: 60.00 vs 62.00" in text
    alone = bilstm_answer(table2_per_class(records[:2], "test"), None)  # nothing trained alike: no test figure
    assert "no test comparison" in alone and "changes test accuracy" not in alone
    # the ablation is not set against a full run cut shorter than it
    assert table3_ablation(records, "test")["groups"][0]["rows"][-1]["vs_full"]["accuracy"]["seeds"] == []
    t1 = table1_overall(records, "test")
    t1_text = table1_markdown(t1)
    assert t1["rows"][0]["time_limited_seeds"] == [0] and "2 (1 cut by the time limit)" in t1_text
    # the claimed row is a row of the table: above the notes, not after a paragraph where it would be plain text
    assert t1_text.index("| **claim** |") < t1_text.index("Mean class accuracy is") < t1_text.index("Cut by the")
    # the shipped pair's own files (full seed 1, baseline seed 0) are shown too, as unpaired
    t2 = table2_per_class(records, "test", shipped=(records[2], records[1]))
    assert t2["shipped_pair"]["rows"][0]["difference_accuracy"] == pytest.approx(0.01)
    text = table2_markdown(t2)
    assert text.index("**The shipped pair's two files**") < text.index("## paper recipe") and "Different seeds" in text
    assert "| class |" not in table2_markdown(table2_per_class(records[:2], "test"))  # no pair trained alike


def test_the_pair_is_chosen_on_validation_never_on_test():
    records = [_record("full", 0, 0.70, 0.10, backbone="small"), _record("baseline", 0, 0.60, 0.10, backbone="small"),
               _record("full", 0, 0.60, 0.99, backbone="big"), _record("baseline", 0, 0.65, 0.99, backbone="big"),
               _record("full", 1, 0.80, 0.10, backbone="small"), _record("baseline", 1, 0.55, 0.99, backbone="small")]
    pair = select_pair(records)
    assert pair["backbone"] == "small" and pair["full"].seed == 1 and pair["baseline"].seed == 0


def test_a_recipes_mean_leaves_out_runs_the_time_limit_cut_unless_it_cut_them_all():
    records = [_record("full", 0, 0.50, 0.5, recipe="long", epochs=[0.4, 0.5], time_limited=True),
               _record("full", 1, 0.86, 0.5, recipe="long", epochs=[0.5] * 7 + [0.86]),
               _record("baseline", 0, 0.87, 0.5, recipe="long", epochs=[0.5] * 7 + [0.87]),
               _record("full", 0, 0.84, 0.5, recipe="short", epochs=[0.84]),
               _record("baseline", 0, 0.84, 0.5, recipe="short", epochs=[0.84]),
               _record("full", 0, 0.70, 0.5, recipe="cut", epochs=[0.7], time_limited=True),
               _record("baseline", 0, 0.70, 0.5, recipe="cut", epochs=[0.7], time_limited=True)]
    pair = select_pair(records)  # with the cut seed, "long" would average 0.68 and lose to "short"
    assert (pair["recipe"], pair["full"].seed) == ("long", 1)
    assert pair["candidates"] == pytest.approx({"long/b": 0.86, "short/b": 0.84, "cut/b": 0.70})
    assert pair["candidate_runs"] == {"long/b": 1, "short/b": 1, "cut/b": 1}  # cut: all cut, so all counted
    assert "cut short left out" in pair["rule"]


def test_the_pair_is_chosen_on_evaluated_val_when_every_run_has_it_and_never_on_a_mix():
    # recipe "bf16" records an optimistic training val (cached bfloat16 features); its checkpoints evaluate lower
    records = [_record("full", 0, 0.80, 0.5, recipe="bf16", val_evaluated=0.70),
               _record("baseline", 0, 0.80, 0.5, recipe="bf16", val_evaluated=0.70),
               _record("full", 0, 0.75, 0.5, recipe="fp32", val_evaluated=0.75),
               _record("full", 1, 0.74, 0.5, recipe="fp32", val_evaluated=0.76),
               _record("baseline", 0, 0.75, 0.5, recipe="fp32", val_evaluated=0.75)]
    pair = select_pair(records)
    assert (pair["recipe"], pair["full"].seed, pair["validation_source"]) == ("fp32", 1, "evaluate")
    assert pair["candidates"]["bf16/b"] == pytest.approx(0.70)
    records[-1].evals.pop("val")  # one candidate run without eval_val.json: training's val for every run
    pair = select_pair(records)
    assert (pair["recipe"], pair["validation_source"]) == ("bf16", "training")
    assert "training recorded" in pair["rule"]


def test_the_val_gap_of_cached_features_is_summarised_per_precision():
    rows = [{"cached_features": "bfloat16", "val_accuracy_best": 0.80, "val_accuracy_evaluate": 0.79},
            {"cached_features": "bfloat16", "val_accuracy_best": 0.70, "val_accuracy_evaluate": 0.72},
            {"cached_features": "float32", "val_accuracy_best": 0.75, "val_accuracy_evaluate": 0.75},
            {"cached_features": "float32", "val_accuracy_best": 0.75, "val_accuracy_evaluate": None},  # not evaluated
            {"cached_features": None, "val_accuracy_best": 0.9, "val_accuracy_evaluate": 0.8}]  # trained on images
    bf16, fp32 = cached_feature_val_gap(rows)
    assert (bf16["features"], bf16["n"], fp32["features"], fp32["n"]) == ("bfloat16", 2, "float32", 1)
    assert bf16["mean"] == pytest.approx(0.005) and (bf16["min"], bf16["max"]) == pytest.approx((-0.01, 0.02))
    assert fp32["std"] is None and fp32["mean"] == 0


def test_ablation_with_two_or_more_seeds_is_judged_by_a_paired_t_test_of_its_differences():
    """One early-stopped seed can make a variant's mean difference far exceed the band from the full model's spread
    while its own spread shows it is noise: the t-test on the differences sees that, the band does not."""
    from training.verdicts import ablation_answer

    full = {0: _record("full", 0, 0.77, 0.776), 1: _record("full", 1, 0.77, 0.780), 2: _record("full", 2, 0.77, 0.772)}
    unstable = {0: _record("full_no_spatial", 0, 0.77, 0.7716), 1: _record("full_no_spatial", 1, 0.67, 0.6742)}
    steady = {s: _record("full_no_class_weighting", s, 0.83, r.evals["test"]["accuracy"] + 0.0526 + 0.004 * s)
              for s, r in full.items()}
    table = table3_ablation(list(full.values()) + list(unstable.values()) + list(steady.values()), "test")
    rows = {r["variant"]: r for r in table["groups"][0]["rows"]}
    d = rows["full_no_spatial"]["vs_full"]["accuracy"]
    assert d["seeds"] == [0, 1] and d["mean"] == pytest.approx(-0.0551)
    assert d["p_value"] == pytest.approx(ttest_rel([0.7716, 0.6742], [0.776, 0.780]).pvalue)
    assert rows["full"]["vs_full"] is None and rows["full_no_class_weighting"]["vs_full"]["accuracy"]["p_value"] < 0.05
    text = ablation_answer(table)
    # the band (t·√2·σ/√2 = 1.72 pp for σ = 0.40 pp) would call -5.51 pp beyond seed noise
    assert "(`full_no_spatial`) -5.51 ± 7.17 pp (within seed noise), macro F1" in text
    assert f"(seeds 0, 1; paired t-test p = {d['p_value']:.2g})" in text and f"{d['p_value']:.2g}" == "0.47"
    assert "(`full_no_class_weighting`) +5.66 ± 0.40 pp (beyond seed noise)" in text
    assert "two-sided paired t-test" in text and "t·√2·σ/√n" not in text  # no one-seed variant: no band
    one_seed = _record("full_no_channel", 0, 0.77, 0.7560)  # -2.00 pp against a 2.43 pp band (σ = 0.40 pp)
    text = ablation_answer(table3_ablation([*full.values(), *unstable.values(), one_seed], "test"))
    assert "(`full_no_channel`) -2.00 pp (within seed noise), macro F1 -2.00 pp, mean class accuracy -2.00 pp " \
           "(seed 0)" in text
    assert "Without a t-test (one seed, or no spread), a difference counts as seed noise when it is " \
           "under t·√2·σ/√n" in text and "2.43 pp for 1 seed." in text
    records = [*full.values(), *unstable.values(), one_seed]
    lines = readme_block(table2_per_class(records, "test"), table3_ablation(records, "test"), None).splitlines()
    assert any("(`full_no_channel`) | 0 | -2.00 |" in line and line.endswith("| within seed noise (noise band) |")
               for line in lines), lines


def test_per_class_differences_use_only_the_seeds_both_variants_have():
    records = [_record("full", 0, 0.5, 0.60)] + [_record("baseline", s, 0.5, 0.50 + 0.1 * s) for s in range(3)]
    group = table2_per_class(records, "test")["groups"][0]
    assert group["seeds"] == [0]
    row = group["rows"][0]  # baseline seeds 1 and 2 (0.6, 0.7) would make the Δ 0 instead of +0.1
    assert row["baseline_accuracy"] == pytest.approx(0.5) and row["difference_accuracy"] == pytest.approx(0.1)
    assert "Seeds: 0." in table2_markdown(table2_per_class(records, "test"))


def test_ablation_answer_judges_one_seed_against_the_full_models_spread():
    from training.verdicts import ablation_answer

    def row(variant, std=None, delta=None):
        acc = {"mean": 0.77, "std": std, "n": 3 if std is not None else 1}
        vs_full = None if delta is None else {
            "accuracy": {"seeds": [0], "mean": delta, "std": None, "n": 1},
            "macro_f1": {"seeds": [0], "mean": -2 * delta, "std": None, "n": 1}}
        return {"variant": variant, "description": variant.replace("_", " "), "test": {"accuracy": acc},
                "vs_full": vs_full}

    two_seeds = row("full_no_class_weighting")
    two_seeds["vs_full"] = {"accuracy": {"seeds": [0, 1], "mean": -0.0180, "std": 0.001, "n": 2}}
    table = {"split": "test", "groups": [{"recipe": "r", "backbone": "b", "rows": [
        row("full", std=0.0034), row("full_no_spatial", delta=-0.0200), row("full_no_channel", delta=-0.0250),
        two_seeds]}]}
    # band: t(0.975, 2 dof) * sqrt(2) * 0.34 = 4.303 * 0.481 = 2.07 pp for one seed, 1.46 pp for a mean of two;
    # with 2 in place of 4.303 (a sigma known exactly) -2.00 would wrongly count as beyond noise
    text = ablation_answer(table)
    assert "(`full_no_spatial`) -2.00 pp (within seed noise), macro F1 +4.00 pp (seed 0)" in text
    assert "(`full_no_channel`) -2.50 pp (beyond seed noise), macro F1 +5.00 pp (seed 0)" in text
    # -1.80 would be noise for one seed, but not as the mean of two (no t-test in these hand-made figures)
    assert "(`full_no_class_weighting`) -1.80 ± 0.10 pp (beyond seed noise) (seeds 0, 1)" in text
    assert "t = 4.30" in text and "2.07 pp for 1 seed, 1.46 pp for 2 seeds." in text
    assert "paired t-test" not in text
    assert "mean class accuracy" not in text  # absent metric: not reported
    assert ablation_answer({"split": "test", "groups": []}) == ""


def test_a_recipe_without_class_weights_is_not_its_own_ablation():
    from training.records import variant_of

    config = {"variant": "full", "spatial_attention": "spatial", "channel_attention": "channel"}
    unweighted_recipe = {"class_weighting": False}  # e.g. frozen_backbone_tail_long_fp32_soft.yaml
    assert variant_of(config, unweighted_recipe, {"no_class_weighting": False}) == "full"
    assert variant_of({**config, "variant": "baseline"}, unweighted_recipe, {"no_class_weighting": False}) == "baseline"
    # the ablation is the run started with --no-class-weighting (training.study's full_no_class_weighting)
    assert variant_of(config, unweighted_recipe, {"no_class_weighting": True}) == "full_no_class_weighting"
    assert variant_of(config, unweighted_recipe, {}) == "full_no_class_weighting"  # records without the flag
    assert variant_of({**config, "spatial_attention": "none"}, {"class_weighting": True}, {}) == "full_no_spatial"


def test_the_readme_table_holds_each_recipes_paired_effect_verdict_and_left_out_seeds():
    records = []
    for recipe, diffs in (("a", [0.010, -0.010, 0.005]), ("b", [0.010, 0.020, 0.016])):
        records += [_record("full", s, 0.5, 0.70 + d, recipe=recipe) for s, d in enumerate(diffs)]
        records += [_record("baseline", s, 0.5, 0.70, recipe=recipe) for s in range(3)]
    records += [_record("full", 0, 0.60, 0.60, recipe="c", epochs=[0.50, 0.60], time_limited=True),
                _record("baseline", 0, 0.80, 0.80, recipe="c", epochs=[0.55, 0.62, 0.70, 0.80]),
                _record("full", 1, 0.81, 0.81, recipe="c", epochs=[0.5, 0.6, 0.7, 0.81]),
                _record("baseline", 1, 0.80, 0.80, recipe="c", epochs=[0.5, 0.6, 0.7, 0.80]),
                _record("full", 0, 0.6, 0.6, recipe="d", epochs=[0.6], time_limited=True),
                _record("baseline", 0, 0.7, 0.7, recipe="d", epochs=[0.5, 0.7])]
    t2 = table2_per_class(records, "test")
    effects = {g["recipe"]: g["bilstm_effect"]["accuracy"] for g in t2["groups"]}
    lines = readme_block(t2, table3_ablation(records, "test"), None).splitlines()
    row = {r: next(line for line in lines if line.startswith(f"| {r} | b |")) for r in "abcd"}
    b = effects["b"]
    assert f"| 3 | 71.53 ± 0.50 | 70.00 ± 0.00 | {pct(b, True)} | 3 of 3 | {b['p_holm']:.2g} |" in row["b"]
    assert "| beyond seed noise for this recipe alone, not once the others are counted |" in row["b"]
    assert "| within seed noise |" in row["a"] and "loss: none" in row["b"] and "gain: none" not in row["b"]
    assert "| 1 | 81.00 | 80.00 | +1.00 | 1 of 1 |" in row["c"] and "too few seeds" in row["c"]
    assert "left out (time limit, unequal epochs): seed 0" in row["c"]
    assert "not compared on test" in row["d"] and "(val at the same epoch: +10.00 pp)" in row["d"]
    assert len({line.count("|") for line in lines if line.startswith("|")}) == 1  # every row as wide as the header
