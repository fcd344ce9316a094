"""The app's model card and dataset view, read from files only: checkpoint metadata (model.json inside the
.safetensors header), `checkpoints/README.md` and `results/` (the tables and PNGs `python -m training.results` writes).

Nothing here is typed in by hand except the paper's claims, which are shown as claims beside our measurements.
When a file is absent the text says so; no number is ever made up. Never imports gradio.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "results"
CHECKPOINT_DIR = REPO / "checkpoints"

# The paper's own figures (RAF-DB, ResNet50 backbone); ours are FER+ (see the data section), so they are not
# expected to match: they are listed so a reader can see what was claimed, each beside what we measured.
PAPER_CLAIMS = (
    ("accuracy", "Accuracy", "94.20 % (RAF-DB test)"),
    ("contempt", "Contempt accuracy", "76 %"),
    ("params", "Parameters", "46.1 M"),
    ("flops", "FLOPs", "15.3 G"),
)
NOT_MEASURED = "not measured yet"

LIMITATIONS = """\
- **Training faces are 48x48 gray FER2013 crops** (FER+ labels). Photos are converted to gray and shrunk to 48x48
  before the network sees them, so colour and fine detail are lost; faces framed differently from FER2013 (profile,
  tilted, partly hidden, very small) are read less reliably.
- **Dataset biases:** FER2013 was collected by web image search; its age, skin-tone, gender and cultural balance is
  unknown and uneven, posed and exaggerated expressions dominate, and disgust/contempt/fear have very few examples
  (hundreds out of ~25,000), so those classes are the least reliable.
- **An expression is not an emotion.** The model labels what a face looks like, by crowd-sourced majority vote; it
  cannot know what a person feels.
- **Not for decisions about people** (hiring, policing, education, health, security or any assessment of an
  individual). This is a research and teaching demo of a model and its explanations.
- Explanation maps show where the model's evidence lies on a coarse 7x7 grid; they are not proof of causation, and
  the region names assume a FER2013-like frontal framing.
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2%}" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    return str(value)


def _metrics_table(metadata: dict) -> list[str]:
    rows = []
    for split in ("validation", "test"):
        metrics = metadata.get(split)
        if not isinstance(metrics, dict):
            continue
        for key in ("accuracy", "mean_class_accuracy", "macro_f1", "weighted_f1"):
            if key in metrics:
                rows.append(f"| {split} {key.replace('_', ' ')} | {_fmt(metrics[key])} |")
    return rows


def shown_path(path) -> str:
    """A file's path relative to the working directory when it lies below it: a Space's visitors see
    `checkpoints/x.safetensors`, not the server's layout."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def checkpoint_section(kind: str, predictor, test_evaluation: dict | None = None) -> str:
    """Markdown for one loaded checkpoint: architecture, preprocessing, data, the figures stored with it and, for a
    shipped file, its test figures (`shipped_evaluation`)."""
    if predictor is None:
        return f"### {kind}\n\nNot loaded."
    meta = predictor.metadata
    config = predictor.config
    pre = predictor.preprocessing
    lines = [f"### {kind}: {predictor.name}", "", f"File: `{shown_path(predictor.checkpoint_path)}`", "",
             "| property | value |", "|---|---|",
             f"| backbone | {config.backbone} |", f"| variant | {config.variant} |",
             f"| channel / spatial attention | {config.channel_attention} / {config.spatial_attention} |",
             f"| parameters (counted) | {predictor.num_parameters / 1e6:.1f} M |",
             f"| input | {'gray' if pre.grayscale else 'colour'}, {pre.source_size or pre.image_size} px, "
             f"resized to {pre.image_size} |"]
    data = meta.get("data")
    if isinstance(data, dict):  # not its folder: that is the training machine's, of no use to a reader
        train = data.get("train") if isinstance(data.get("train"), dict) else {}
        size = f", {train['n']:,} training images" if isinstance(train.get("n"), int) else ""
        lines.append(f"| data | {data.get('format', '?')}{size} |")
    metrics = _metrics_table(meta if test_evaluation is None else {**meta, "test": test_evaluation})
    lines += metrics
    calibration = meta.get("calibration")
    lines.append(f"| probabilities | calibrated: logits divided by T = {predictor.temperature:.3g}, fitted on "
                 f"{calibration.get('split', '?')} ({calibration.get('images', '?')} images) |"
                 if isinstance(calibration, dict) and predictor.temperature != 1
                 else "| probabilities | as trained (no calibration temperature recorded) |")
    if test_evaluation is not None and test_evaluation.get("flip_tta"):
        lines.append("| test figures | with flip test-time augmentation, as the recipe evaluates; the app predicts "
                     "from one view |")
    training = meta.get("training")
    if isinstance(training, dict) and "best_epoch" in training:
        lines.append(f"| best epoch | {training['best_epoch']} |")
    if meta.get("git_commit"):
        lines.append(f"| git commit | `{str(meta['git_commit'])[:12]}` |")
    if not metrics:
        lines += ["", "No validation or test figures are stored in this checkpoint."]
    return "\n".join(lines)


# results/ files written by `python -m training.results`, in reading order
RESULT_TABLES = ("table1_overall", "table2_per_class", "table3_ablation", "table4_cost", "training_runs",
                 "prior_correction", "temperature", "faithfulness")  # the last three: their own training.* studies
COMPARE_TABLES = ("table2_per_class",)  # the Compare tab's dataset view: per class, both models, Bi-LSTM effect


def results_markdown(results_dir: str | Path = RESULTS_DIR, stems=RESULT_TABLES) -> str:
    """The measured results as published in `results/` (the Markdown tables `python -m training.results` writes),
    or a note that there are none yet."""
    results_dir = Path(results_dir)
    parts = []
    for stem in stems:
        path = results_dir / f"{stem}.md"
        if path.is_file():
            text = shipped_group_first(path.read_text(errors="replace").strip(), results_dir)
            parts.append(f"_From `results/{path.name}`:_\n\n{text}")
    if not parts:
        return ("**No results are published yet.** The dataset view (per-class accuracy of both models, confusion "
                "matrices, the Bi-LSTM's effect over seeds) appears here once the GPU runs are done and "
                "`python -m training.results --records results/runs --out results` has written `results/`.")
    # the tables' own "# Table ..." headings would be larger than the tab's headings
    return "\n\n".join(parts).replace("\n# ", "\n#### ").replace("\n## ", "\n##### ")


def shipped_group_first(table_markdown: str, results_dir: str | Path = RESULTS_DIR) -> str:
    """A results table whose "## <recipe> recipe, <backbone>" sections are reordered so that the shipped pair's
    (results/selection.json) comes first, marked as such: a visitor reads the loaded models' figures before the
    other recipes'. Tables without such sections, or without a selection, are returned as they are."""
    try:
        selection = json.loads((Path(results_dir) / "selection.json").read_text())
        heading = f"## {selection['recipe']} recipe, {selection['backbone']}"
    except (OSError, ValueError, KeyError, TypeError):
        return table_markdown
    head, *sections = table_markdown.split("\n\n## ")
    sections = ["## " + section for section in sections]
    shipped = [sec for sec in sections if sec.split("\n", 1)[0] == heading]
    if not shipped:
        return table_markdown
    marked = shipped[0].replace(heading, heading + " (the shipped pair)", 1)
    return "\n\n".join([head, marked] + [sec for sec in sections if sec is not shipped[0]])


def results_images(results_dir: str | Path = RESULTS_DIR, limit: int = 12) -> list[tuple[np.ndarray, str]]:
    """(image, caption) for the PNGs under results/ (confusion matrices, curves), read into memory so the app
    serves them without widening Gradio's allowed paths."""
    from PIL import Image

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    images = []
    for path in sorted(results_dir.glob("*.png"))[:limit]:  # not the per-run curves under runs/
        try:
            with Image.open(path) as im:
                images.append((np.asarray(im.convert("RGB")), str(path.relative_to(results_dir))))
        except OSError:
            continue  # a broken PNG is left out of the gallery, not fatal
    return images


def shipped_evaluation(predictor, results_dir: str | Path = RESULTS_DIR) -> dict | None:
    """The test evaluation `results/shipped.json` records for the predictor's file, only when that file is byte for
    byte a shipped one (same sha256): figures measured on another file never describe the loaded model."""
    from fer_explain.evaluate import file_sha256

    path = Path(results_dir) / "shipped.json"
    if predictor is None or not path.is_file():
        return None
    try:
        files = json.loads(path.read_text()).get("files", {})
        sha = file_sha256(predictor.checkpoint_path)
    except (OSError, ValueError, AttributeError):
        return None
    return next((f.get("evaluation") for f in files.values() if isinstance(f, dict) and f.get("sha256") == sha), None)


def paper_architecture_cost(results_dir: str | Path = RESULTS_DIR) -> tuple[dict, str] | None:
    """(cost JSON, file name) of the paper's network as it describes it (resnet50, both attentions, Bi-LSTM) from
    results/cost/, written by `python -m fer_explain cost --json`; parameters and FLOPs do not depend on the device."""
    from fer_explain.cost import flops_trustworthy

    for path in sorted((Path(results_dir) / "cost").glob("*.json")):
        try:
            cost = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        config = cost.get("model_config", {}) if isinstance(cost, dict) else {}
        if (config.get("backbone"), config.get("variant"), config.get("channel_attention"),
                config.get("spatial_attention")) == ("resnet50", "full", "channel", "spatial") \
                and flops_trustworthy(cost):
            return cost, path.name
    return None


def balanced_contempt(sha256: str | None, results_dir: str | Path = RESULTS_DIR) -> str | None:
    """The file's contempt test accuracy under the class-balanced decision (tau chosen on val) that
    results/prior_correction.json records for it (`python -m training.prior_correction`), matched by sha256."""
    path = Path(results_dir) / "prior_correction.json"
    if not sha256 or not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
        entry = next((m for m in result["models"] if m["sha256"] == sha256), None)
        if entry is None or entry["test"]["balanced"]["recall"]["contempt"] is None:
            return None
        views = "flip TTA" if result.get("flip_tta") else "one view"
        return (f"{entry['test']['balanced']['recall']['contempt']:.1%} with a class-balanced decision ({views}, "
                f"τ = {entry['tau']:g} chosen on val; `results/prior_correction.md`)")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a damaged file: the card goes on without it
        return None


def claims_beside_measurements(models, evaluation: dict | None, results_dir: str | Path = RESULTS_DIR) -> str:
    """One row per claim of the paper: its value, ours, and the file ours comes from. Accuracy figures are the
    loaded Bi-LSTM model's own (`evaluation`: its `shipped_evaluation`, FER+ test); parameters and FLOPs are the
    paper's architecture's (resnet50), whatever backbone the loaded model has, with the loaded model's count."""
    ours = dict.fromkeys((key for key, _, _ in PAPER_CLAIMS), NOT_MEASURED)
    if evaluation is not None:
        faces = f"{evaluation.get('n', 0):,} faces" if evaluation.get("n") else "faces"
        tta = ", with flip test-time augmentation" if evaluation.get("flip_tta") else ""
        ours["accuracy"] = (f"{evaluation['accuracy']:.2%} (FER+ test, {faces}{tta}; the loaded Bi-LSTM model, "
                            "`results/shipped.json`)")
        contempt = evaluation.get("per_class", {}).get("contempt")
        if contempt and contempt.get("support"):
            ours["contempt"] = (f"{contempt['recall']:.1%} ({round(contempt['recall'] * contempt['support'])} of "
                                f"{contempt['support']} FER+ test faces)")
            balanced = balanced_contempt(evaluation.get("checkpoint_sha256"), results_dir)
            if balanced:
                ours["contempt"] += f"; {balanced}"
    elif models.main is not None:
        ours["accuracy"] = ours["contempt"] = ("no test figures on record for the loaded checkpoint (only for "
                                               "the shipped files): `python -m fer_explain evaluate --checkpoint "
                                               "FILE --data DIR` measures them")
    cost = paper_architecture_cost(results_dir)
    loaded = "" if models.main is None else (f"; the loaded {models.main.config.backbone} model: "
                                             f"{models.main.num_parameters / 1e6:.1f} M")
    if cost is not None:
        cost, name = cost
        ours["params"] = f"{cost['params']['total'] / 1e6:.1f} M (resnet50 + Bi-LSTM, `results/cost/{name}`){loaded}"
        lstm = cost["flops_lstm_analytic"] / 1e9
        ours["flops"] = (f"{cost['gflops']:.2f} G at 224x224, of which the Bi-LSTM {lstm:.2f} G "
                         f"(analytic; `results/cost/{name}`)")
    elif loaded:
        ours["params"] = loaded[2:]
    rows = "\n".join(f"| {title} | {claim} | {ours[key]} |" for key, title, claim in PAPER_CLAIMS)
    return ("### The paper's claims beside our measurements\n\n| | the paper claims | we measured |\n|---|---|---|\n"
            + rows + "\n\nOur models are trained and tested on FER+ (not RAF-DB, which could not be obtained), so the "
            "paper's accuracy figures are not expected to match; parameters and FLOPs are of the same architecture.")


def model_card_markdown(models, checkpoint_dir: str | Path = CHECKPOINT_DIR,
                        results_dir: str | Path = RESULTS_DIR) -> str:
    readme = Path(checkpoint_dir) / "README.md"
    readme_text = readme.read_text(errors="replace").strip() if readme.is_file() else \
        "_No `checkpoints/README.md` yet._"
    main_test = shipped_evaluation(models.main, results_dir)
    return "\n\n".join([
        "## Model card",
        "Reproduction of the *Bi-LSTM enhanced dual attention network* for facial emotion recognition: ResNet "
        "features → channel attention (eq. 1) → spatial attention (eq. 2) → the 7x7 attended map read row-major "
        "as 49 tokens by a 2-layer Bi-LSTM → 8 emotions. The baseline is the same network with global average "
        "pooling instead of the Bi-LSTM.",
        claims_beside_measurements(models, main_test, results_dir),
        checkpoint_section("Bi-LSTM model", models.main, main_test),
        checkpoint_section("Baseline", models.baseline, shipped_evaluation(models.baseline, results_dir)),
        "### Published results\n\n" + results_markdown(results_dir),
        "### checkpoints/README.md\n\n" + readme_text,
        "### Limitations and intended use\n\n" + LIMITATIONS,
    ])
