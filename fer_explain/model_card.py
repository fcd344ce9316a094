"""The app's model card and dataset view, read from files only: checkpoint metadata (model.json inside the
.safetensors header), `checkpoints/README.md` and `results/` (the tables and PNGs `python -m training.results` writes).

Nothing here is typed in by hand except the paper's claims, which are shown as claims beside our measurements.
When a file is absent the text says so; no number is ever made up. Never imports gradio.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "results"
CHECKPOINT_DIR = REPO / "checkpoints"

# The paper's own figures (RAF-DB, ResNet50 backbone); ours are FER+ (see the data section), so they are not
# expected to match: they are listed so a reader can see what was claimed.
PAPER_CLAIMS = (
    ("Accuracy on RAF-DB", "94.20 %"),
    ("Contempt accuracy", "76 %"),
    ("Parameters", "46.1 M"),
    ("FLOPs", "15.3 G"),
)

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


def checkpoint_section(kind: str, predictor) -> str:
    """Markdown for one loaded checkpoint: architecture, preprocessing, data and the figures stored with it."""
    if predictor is None:
        return f"### {kind}\n\nNot loaded."
    meta = predictor.metadata
    config = predictor.config
    pre = predictor.preprocessing
    lines = [f"### {kind}: {predictor.name}", "", f"File: `{predictor.checkpoint_path}`", "",
             "| property | value |", "|---|---|",
             f"| backbone | {config.backbone} |", f"| variant | {config.variant} |",
             f"| channel / spatial attention | {config.channel_attention} / {config.spatial_attention} |",
             f"| parameters (counted) | {predictor.num_parameters / 1e6:.1f} M |",
             f"| input | {'gray' if pre.grayscale else 'colour'}, {pre.source_size or pre.image_size} px, "
             f"resized to {pre.image_size} |"]
    data = meta.get("data")
    if isinstance(data, dict):
        lines.append(f"| data | {data.get('format', '?')} at `{data.get('root', '?')}` |")
    metrics = _metrics_table(meta)
    lines += metrics
    training = meta.get("training")
    if isinstance(training, dict) and "best_epoch" in training:
        lines.append(f"| best epoch | {training['best_epoch']} |")
    if meta.get("git_commit"):
        lines.append(f"| git commit | `{str(meta['git_commit'])[:12]}` |")
    if not metrics:
        lines += ["", "No validation or test figures are stored in this checkpoint."]
    return "\n".join(lines)


# results/ files written by `python -m training.results`, in reading order
RESULT_TABLES = ("table1_overall", "table2_per_class", "table3_ablation", "table4_cost", "training_runs")
COMPARE_TABLES = ("table2_per_class",)  # the Compare tab's dataset view: per class, both models, Bi-LSTM effect


def results_markdown(results_dir: str | Path = RESULTS_DIR, stems=RESULT_TABLES) -> str:
    """The measured results as published in `results/` (the Markdown tables `python -m training.results` writes),
    or a note that there are none yet."""
    results_dir = Path(results_dir)
    parts = []
    for stem in stems:
        path = results_dir / f"{stem}.md"
        if path.is_file():
            parts.append(f"_From `results/{path.name}`:_\n\n{path.read_text(errors='replace').strip()}")
    if not parts:
        return ("**No results are published yet.** The dataset view (per-class accuracy of both models, confusion "
                "matrices, the Bi-LSTM's effect over seeds) appears here once the GPU runs are done and "
                "`python -m training.results --records results/runs --out results` has written `results/`.")
    # the tables' own "# Table ..." headings would be larger than the tab's headings
    return "\n\n".join(parts).replace("\n# ", "\n#### ").replace("\n## ", "\n##### ")


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


def model_card_markdown(models, checkpoint_dir: str | Path = CHECKPOINT_DIR,
                        results_dir: str | Path = RESULTS_DIR) -> str:
    claims = "\n".join(f"| {name} | {value} |" for name, value in PAPER_CLAIMS)
    ours = []
    if models.main is not None:
        ours.append(f"| Parameters of the loaded Bi-LSTM model (counted) | {models.main.num_parameters / 1e6:.1f} M |")
        for row in _metrics_table(models.main.metadata):
            ours.append(row.replace("| ", "| Bi-LSTM ", 1))
    ours_text = "\n".join(ours) if ours else "| (no model loaded) | |"
    readme = Path(checkpoint_dir) / "README.md"
    readme_text = readme.read_text(errors="replace").strip() if readme.is_file() else \
        "_No `checkpoints/README.md` yet._"
    return "\n\n".join([
        "## Model card",
        "Reproduction of the *Bi-LSTM enhanced dual attention network* for facial emotion recognition: ResNet "
        "features → channel attention (eq. 1) → spatial attention (eq. 2) → the 7x7 attended map read row-major "
        "as 49 tokens by a 2-layer Bi-LSTM → 8 emotions. The baseline is the same network with global average "
        "pooling instead of the Bi-LSTM.",
        "### The paper's claims (not measured here)\n\n| claim | value |\n|---|---|\n" + claims,
        "### Our measurements\n\n| measurement | value |\n|---|---|\n" + ours_text
        + "\n\nOur models are trained on FER+ (not RAF-DB), so the paper's RAF-DB figures are not expected to match.",
        checkpoint_section("Bi-LSTM model", models.main),
        checkpoint_section("Baseline", models.baseline),
        "### Published results\n\n" + results_markdown(results_dir),
        "### checkpoints/README.md\n\n" + readme_text,
        "### Limitations and intended use\n\n" + LIMITATIONS,
    ])
