"""The README's prose quotes measured figures by hand (the status paragraph and its answer to "does the Bi-LSTM
help?", and the calibration of the shipped files). These tests fail when the files they come from change and the
prose does not: a new shipped pair (results/shipped.json) or new runs behind results/*.md."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = json.loads((REPO / "results" / "shipped.json").read_text())["files"]
MEAN_STD = re.compile(r"([+−-]?\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)")


def status_text() -> str:
    """The status blockquote, from its heading to the next section, as one line without the '>' markers."""
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("> **Status"):readme.index("## Training")]
    return " ".join(re.sub(r"^>", "", block, flags=re.M).split())


def test_status_quotes_the_shipped_pairs_measured_figures():
    full, base = SHIPPED["full"], SHIPPED["baseline"]
    seed = {v: int(e["run"].rsplit("seed", 1)[1]) for v, e in SHIPPED.items()}
    val = {v: json.loads((REPO / "results" / "runs" / e["run"] / "eval_val.json").read_text())["accuracy"]
           for v, e in SHIPPED.items()}
    f, b = full["evaluation"], base["evaluation"]
    assert f["flip_tta"] and b["flip_tta"] and f["n"] == b["n"] == 3137
    status = status_text()
    for quote in (f"comes from `{full['run'].split('/')[0]}.yaml`",
                  f"Bi-LSTM seed {seed['full']} (val {100 * val['full']:.2f} %), baseline seed {seed['baseline']} "
                  f"(val {100 * val['baseline']:.2f} %)",
                  f"gets **{100 * f['single_view_accuracy']:.1f} %** as `python -m fer_explain evaluate` measures it",
                  f"and {100 * f['accuracy']:.1f} % with flip test-time augmentation",
                  f"its baseline {100 * b['single_view_accuracy']:.1f} % and {100 * b['accuracy']:.1f} %",
                  f"(mean class accuracy {100 * f['mean_class_accuracy']:.1f} % either way)"):
        assert quote in status, quote


def results_markdown() -> str:
    """Every results/*.md that training.results writes, as one text."""
    return "\n".join(path.read_text() for path in sorted((REPO / "results").glob("*.md")))


def _decimals(number: str) -> int:
    return len(number.split(".")[1]) if "." in number else 0


def test_every_mean_and_std_the_status_quotes_is_in_a_regenerated_table():
    """Each 'mean ± std' of the prose is one that training.results wrote (results/*.md), at the prose's rounding; the
    sign is left out of the comparison since the prose says 'trails by' where the tables print a minus."""
    written = [(abs(float(m.replace("−", "-"))), float(s)) for m, s in MEAN_STD.findall(results_markdown())]
    quoted = MEAN_STD.findall(status_text())
    assert len(quoted) >= 5  # the answer's figures are found at all
    for mean, std in quoted:
        target = (abs(float(mean.replace("−", "-"))), float(std))
        assert any((round(m, _decimals(mean)), round(s, _decimals(std))) == target for m, s in written), \
            f"{mean} ± {std} is in the README's status but in no results/*.md table: rewrite the prose"


def test_every_p_value_the_status_quotes_is_one_a_regenerated_answer_prints():
    """The prose's p-values (paired t-tests, Holm-adjusted ones) are copied from results/README.md's answers, as
    printed there: a rounding of its own (0.0085 quoted as 0.008) or a p from older runs fails."""
    written = results_markdown()
    status = status_text()
    quoted = re.findall(r"p = (\d\.\d+)", status) + re.findall(r"(\d\.\d+) after Holm", status)
    assert len(quoted) >= 5
    for p in quoted:
        assert f"p = {p}" in written or f"{p} after Holm" in written, \
            f"p = {p} is in the README's status but in no results/*.md answer: rewrite the prose"


def test_status_counts_the_runs_behind_the_cached_feature_val_gap():
    """The prose gives the bfloat16 and float32 cached-feature runs' val gap with their run counts, which grow with
    every CPU run."""
    gaps = json.loads((REPO / "results" / "training_runs.json").read_text())["val_gap"]
    status = status_text()
    assert gaps
    for gap in gaps:
        assert f"{gap['n']} runs" in status, f"{gap['features']}: {gap['n']} runs"


def test_reading_the_probabilities_quotes_the_shipped_files_calibration():
    """The README's calibration figures are the shipped files' own, one view as the app shows them, at the temperature
    each file records (results/shipped.json, written by training.ship with evaluate's code), and the as-trained ones
    beside them come from the temperature study of the same files."""
    readme = " ".join((REPO / "README.md").read_text().split())
    full, base = (SHIPPED[v]["evaluation"]["single_view_calibration"] for v in ("full", "baseline"))
    temperature = {v: SHIPPED[v]["evaluation"]["temperature"] for v in ("full", "baseline")}
    bins = {round(b["lower"], 2): b for b in full["bins"]}
    study = json.loads((REPO / "results" / "temperature.json").read_text())
    as_trained = next(m for m in study["models"] if m["sha256"] == SHIPPED["full"]["sha256"])["test"]["as_trained"]
    t_full, t_base = temperature["full"], temperature["baseline"]
    gaps = [100 * (b["confidence"] - b["accuracy"]) for b in full["bins"] if b["count"] and 0.59 < b["lower"] < 0.79]
    for quote in (f"T = {t_full:.3g} for the Bi-LSTM model, {t_base:.3g} for the baseline",
                  f"mean probability of {100 * full['mean_confidence']:.1f} % for {100 * full['accuracy']:.1f} % "
                  f"accuracy (expected calibration error {100 * full['ece']:.1f} %",
                  f"baseline {100 * base['mean_confidence']:.1f} % for {100 * base['accuracy']:.1f} %, ECE "
                  f"{100 * base['ece']:.1f} %",
                  f"93–100 % came true {100 * bins[0.93]['accuracy']:.0f} % of the time, those with 73–80 % "
                  f"{100 * bins[0.73]['accuracy']:.0f} %",
                  f"between 60 and 80 % a bar is still {math.floor(min(gaps))} to {math.ceil(max(gaps))} points above",
                  f"As trained, the Bi-LSTM model's mean probability was {100 * as_trained['mean_confidence']:.1f} %"):
        assert quote in readme, quote


def test_the_temperature_the_readme_quotes_is_the_shipped_files_own():
    study = json.loads((REPO / "results" / "temperature.json").read_text())
    full = next(m for m in study["models"] if m["sha256"] == SHIPPED["full"]["sha256"])
    readme = " ".join((REPO / "README.md").read_text().split())
    quote = (f"(T = {full['temperature']:.3g};", f"test ECE from {100 * full['test']['as_trained']['ece']:.1f} to "
             f"{100 * full['test']['scaled']['ece']:.1f} % without changing any decision")
    assert all(q in readme for q in quote), quote


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s"


def test_the_app_latency_prose_quotes_the_shipped_pairs_bench_files():
    """The README's app timings (the slider, /analyze, the first explanation of a class, the browser's waits) are the
    spans of the medians in results/bench/app_cpu_shipped_pair_run*.json, which `app_latency.py --json` writes."""
    runs = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "bench").glob("app_cpu_shipped_pair_run*"))]
    assert len(runs) >= 2
    readme = " ".join((REPO / "README.md").read_text().split())
    first = [r["decide_s"][r["decide_taus"].index(1.5)] for r in runs]  # the warm-up round at tau 1.5
    for quote in (f"So it answers in {_span([r['decide_median_s'] for r in runs])} where `/analyze` takes "
                  f"{_span([r['analyze_median_s'] for r in runs])}",
                  f"explained then: {_span(first)} at τ = 1.5",
                  f"a first visit takes {_span([r['browser_load_median_s'] for r in runs])} until the page is ready",
                  f"a visitor waits {_span([r['browser_drawn_median_s'] for r in runs])} from setting the photo",
                  f"until the page's last event was done, {_span([r['browser_settled_median_s'] for r in runs])}"):
        assert quote in readme, quote


def test_the_prior_correction_prose_quotes_the_study_of_the_shipped_files():
    """The status paragraph's class-balanced figures are results/prior_correction.json's, for these very files (their
    sha256), so a new ship or a rerun study with other figures fails until the prose follows."""
    study = json.loads((REPO / "results" / "prior_correction.json").read_text())
    models = {v: next(m for m in study["models"] if m["sha256"] == SHIPPED[v]["sha256"]) for v in ("full", "baseline")}
    status = status_text()
    for variant, m in models.items():
        before, after = m["test"]["as_trained"], m["test"]["balanced"]
        quote = (f"from {100 * before['mean_class_accuracy']:.1f} to {100 * after['mean_class_accuracy']:.1f} % for "
                 f"{100 * (before['accuracy'] - after['accuracy']):.1f} pp", f"({100 * after['accuracy']:.1f} %; "
                 f"τ = {m['tau']:g})")
        assert all(q in status for q in quote), (variant, quote)
    full = models["full"]["test"]["balanced"]
    assert (f"--prior-correction {models['full']['tau']:g}` measures the same {100 * full['accuracy']:.1f} % and "
            f"{100 * full['mean_class_accuracy']:.1f} % as the study") in status
