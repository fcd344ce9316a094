"""The per-face latency tables (results/latency.md and the README's latency block) from the files that
`python -m fer_explain bench --json` and `python benchmarks/app_latency.py --json` write; nothing typed by hand.

Bench files (they hold "rows"): per model, device and precision, the median (and 90th percentile) of one face's
prediction, of the three explanations of the app, and of those with their faithfulness scores, plus faces/s at
batch 64. App files (they hold "analyze_s"): start-up of `python app.py` until its first HTTP answer and the median
`/analyze`, `/select_class` and `/decide` request through gradio_client (files from before `/decide` existed: "-"),
and, when timed with `--browser`, in headless Chromium a first visit until the page is ready and the upload until
the panels are drawn (else "-").
Evaluate files (they hold "evaluate_s", from `python benchmarks/evaluate_speed.py --json`): a whole split through
`fer_explain evaluate`'s code.
"""
from __future__ import annotations

import json
from pathlib import Path

from fer_explain.errors import UserError
from training.tables_markdown import markdown_table

PREDICT, FAITHFUL = "predict", "explain: three + faithfulness"
_VARIANT = {"full": "Bi-LSTM", "baseline": "baseline"}


def _row(rows: list[dict], name: str, batch: int = 1) -> dict | None:
    return next((r for r in rows if r["name"] == name and r["batch"] == batch), None)


def _together(rows: list[dict]) -> dict | None:
    """The app's explanations timed together (a baseline has no attention map, so its row names two methods)."""
    return next((r for r in rows if r["name"].startswith("explain: ") and " + " in r["name"]), None)


def latency_tables(files: list[Path]) -> dict:
    """{"bench": [...], "app": [...], "evaluate": [...]}: one entry per file, in file-name order."""
    bench, app, evaluate = [], [], []
    for path in sorted(files):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable JSON file ({e})") from None
        try:
            _add(path, data, bench, app, evaluate)
        except (KeyError, TypeError) as e:  # a file of an older format, or edited by hand
            raise UserError(f"{path}: lacks the field {e} that `bench --json`, `app_latency.py --json` and "
                            "`evaluate_speed.py --json` write") from None
    return {"bench": bench, "app": app, "evaluate": evaluate}


def _times(row: dict | None) -> dict | None:
    return None if row is None else {"median_ms": row["median_ms"], "p90_ms": row["p90_ms"], "n": row["n"]}


def _add(path: Path, data: dict, bench: list[dict], app: list[dict], evaluate: list[dict]) -> None:
    """One file's table row, appended to `bench`, `app` or `evaluate`; every field the tables print is read here."""
    if "rows" in data:
        rows = data["rows"]
        batch = max((r for r in rows if r["name"] == PREDICT), key=lambda r: r["batch"], default=None)
        bench.append({"file": path.name, "model": data["model"], "device": data.get("device_name") or data["device"],
                      "precision": data["precision"], "threads": data["torch_threads"],
                      "random_init": data["random_init"], "predict": _times(_row(rows, PREDICT)),
                      "three": _times(_together(rows)), "faithful": _times(_row(rows, FAITHFUL)),
                      "batch": None if batch is None or batch["batch"] == 1 else
                      {"batch": batch["batch"], "faces_per_s": batch["faces_per_s"]}})
    elif "analyze_s" in data:
        app.append({"file": path.name, "checkpoint": Path(data["checkpoint"]).name,
                    "baseline": Path(data["baseline"]).name, "device": data["device"],
                    "cpu_count": data["cpu_count"], "startup_s": data["startup_s"],
                    "analyze_median_s": data["analyze_median_s"], "analyze_runs": len(data["analyze_s"]) - 1,
                    "select_class_median_s": data["select_class_median_s"],
                    "decide_median_s": data.get("decide_median_s"), "decide_labels": data.get("decide_labels"),
                    "browser_load_median_s": data.get("browser_load_median_s"),
                    "browser_drawn_median_s": data.get("browser_drawn_median_s"),
                    "browser_settled_median_s": data.get("browser_settled_median_s")})
    elif "evaluate_s" in data:
        evaluate.append({"file": path.name, "model": data["model"], "variant": data["variant"],
                         "checkpoint": data["checkpoint"], "random_init": data["random_init"],
                         "device": data["device_name"], "threads": data["torch_threads"], "split": data["split"],
                         "n": data["n"], "batch_size": data["batch_size"], "median_s": data["median_s"],
                         "runs": len(data["evaluate_s"]), "images_per_s": data["images_per_s"]})
    else:
        raise UserError(f"{path}: not a file of `fer_explain bench --json`, `benchmarks/app_latency.py --json` or "
                        "`benchmarks/evaluate_speed.py --json`")


def _ms(row: dict | None) -> str:
    return "-" if row is None else f"{row['median_ms']:.1f} ({row['p90_ms']:.1f})"


def _device(name: str, count: int, unit: str) -> str:
    return f"{name} ({count} {unit})" if name == "cpu" else name


def _browser(a: dict) -> list[str]:
    """The two Chromium cells: page ready, and panels drawn (last event done); dashes for a file without them."""
    load = "-" if a.get("browser_load_median_s") is None else f"{a['browser_load_median_s']:.2f}"
    if a.get("browser_drawn_median_s") is None:
        return [load, "-"]
    return [load, f"{a['browser_drawn_median_s']:.2f} ({a['browser_settled_median_s']:.2f})"]


def latency_markdown(t: dict, folder: str = "bench/") -> str:
    """The tables without a heading (the README embeds them, `folder` = where the files are from there)."""
    def link(row: dict) -> str:
        return f"[`{row['file']}`]({folder}{row['file']})"

    rows = []
    for r in t["bench"]:
        fps = None if r["batch"] is None else r["batch"]["faces_per_s"]
        faces = "-" if fps is None else f"{fps:,.0f}" if fps >= 100 else f"{fps:.1f}"
        rows.append([r["model"] + (" (random init)" if r["random_init"] else ""),
                     _device(r["device"], r["threads"], "threads"), r["precision"], _ms(r["predict"]),
                     _ms(r["three"]), _ms(r["faithful"]), faces, link(r)])
    lines = markdown_table(
        "Milliseconds per face: median of timed runs after warm-up (90th percentile in brackets); face detection not "
        "included. The app's explanations: spatial attention, token saliency (IG) and Grad-CAM (a baseline: the last "
        "two). Random-init models where marked: speed does not depend on the weights.",
        ["model", "device", "precision", "prediction, batch 1", "the app's explanations together",
         "… plus faithfulness", "batch 64 faces/s", "file"], "lllrrrrl", rows)
    if t["app"]:
        rows = [[f"{a['checkpoint']} + {a['baseline']}", _device(a["device"], a["cpu_count"], "cores"),
                 f"{a['startup_s']:.1f}", f"{a['analyze_median_s']:.2f} (of {a['analyze_runs']})",
                 f"{a['select_class_median_s']:.2f}",
                 "-" if a.get("decide_median_s") is None else f"{a['decide_median_s']:.2f}", *_browser(a), link(a)]
                for a in t["app"]]
        lines += ["", *markdown_table(
            "The app (`/analyze`: one face, both models, three explanations each, faithfulness for the Bi-LSTM model; "
            "`/select_class`: another class's maps for both models; `/decide`: the prior-correction slider let go, "
            "both models deciding again without a forward pass, at positions whose predicted class was explained "
            "before; in Chromium: a first visit until the header is drawn and the session's connection open, and a "
            "photo set on the page until every visible panel is drawn, in brackets until the page's last event, the "
            "settle step after the analysis, is done; server and browser on the same machine):",
            ["checkpoints", "device", "start-up s", "`/analyze` s (median)", "`/select_class` s (median)",
             "`/decide` s (median)", "in Chromium: page ready s (median)", "upload → panels drawn s (median)",
             "file"], "llrrrrrrl", rows)]
    if t.get("evaluate"):
        rows = [[f"{e['model']} {_VARIANT.get(e['variant'], e['variant'])}"
                 + (" (random init)" if e["random_init"] else f" (`{e['checkpoint']}`)"),
                 _device(e["device"], e["threads"], "threads"), e["split"], f"{e['n']:,}", str(e["batch_size"]),
                 f"{e['median_s']:.1f} (of {e['runs']})", f"{e['images_per_s']:.1f}", link(e)] for e in t["evaluate"]]
        lines += ["", *markdown_table(
            "`python -m fer_explain evaluate` (its code, timed after the data are loaded and one warm-up batch; median "
            "over runs):", ["model", "device", "split", "images", "batch", "seconds (median)", "images/s", "file"],
            "lllrrrrl", rows)]
    return "\n".join(lines) + "\n"
