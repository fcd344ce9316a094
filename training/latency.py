"""The per-face latency tables (results/latency.md and the README's latency block) from the files that
`python -m fer_explain bench --json` and `python benchmarks/app_latency.py --json` write; nothing typed by hand.

Bench files (they hold "rows"): per model, device and precision, the median (and 90th percentile) of one face's
prediction, of the three explanations of the app, and of those with their faithfulness scores, plus faces/s at
batch 64. App files (they hold "analyze_s"): start-up of `python app.py` until its first HTTP answer and the median
`/analyze` and `/select_class` request through gradio_client.
"""
from __future__ import annotations

import json
from pathlib import Path

from fer_explain.errors import UserError

PREDICT, FAITHFUL = "predict", "explain: three + faithfulness"


def _row(rows: list[dict], name: str, batch: int = 1) -> dict | None:
    return next((r for r in rows if r["name"] == name and r["batch"] == batch), None)


def _together(rows: list[dict]) -> dict | None:
    """The app's explanations timed together (a baseline has no attention map, so its row names two methods)."""
    return next((r for r in rows if r["name"].startswith("explain: ") and " + " in r["name"]), None)


def latency_tables(files: list[Path]) -> dict:
    """{"bench": [...], "app": [...]}: one entry per file, in file-name order."""
    bench, app = [], []
    for path in sorted(files):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable JSON file ({e})") from None
        try:
            _add(path, data, bench, app)
        except (KeyError, TypeError) as e:  # a file of an older format, or edited by hand
            raise UserError(f"{path}: lacks the field {e} that `bench --json` and `app_latency.py --json` "
                            "write") from None
    return {"bench": bench, "app": app}


def _times(row: dict | None) -> dict | None:
    return None if row is None else {"median_ms": row["median_ms"], "p90_ms": row["p90_ms"], "n": row["n"]}


def _add(path: Path, data: dict, bench: list[dict], app: list[dict]) -> None:
    """One file's table row, appended to `bench` or `app`; every field the tables print is read here."""
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
                    "select_class_median_s": data["select_class_median_s"]})
    else:
        raise UserError(f"{path}: neither a `fer_explain bench --json` nor a `benchmarks/app_latency.py --json` file")


def _ms(row: dict | None) -> str:
    return "-" if row is None else f"{row['median_ms']:.1f} ({row['p90_ms']:.1f})"


def latency_markdown(t: dict, folder: str = "bench/") -> str:
    """The tables without a heading (the README embeds them, `folder` = where the files are from there)."""
    lines = ["Milliseconds per face: median of timed runs after warm-up (90th percentile in brackets); face detection "
             "not included. The app's explanations: spatial attention, token saliency (IG) and Grad-CAM (a baseline: "
             "the last two). Random-init models where marked: speed does not depend on the weights.", "",
             "| model | device | precision | prediction, batch 1 | the app's explanations together | "
             "… plus faithfulness | batch 64 faces/s | file |", "|---|---|---|---:|---:|---:|---:|---|"]
    for r in t["bench"]:
        device = f"{r['device']} ({r['threads']} threads)" if r["device"] == "cpu" else r["device"]
        fps = None if r["batch"] is None else r["batch"]["faces_per_s"]
        faces = "-" if fps is None else f"{fps:,.0f}" if fps >= 100 else f"{fps:.1f}"
        model = r["model"] + (" (random init)" if r["random_init"] else "")
        lines.append(f"| {model} | {device} | {r['precision']} | {_ms(r['predict'])} | {_ms(r['three'])} | "
                     f"{_ms(r['faithful'])} | {faces} | [`{r['file']}`]({folder}{r['file']}) |")
    if t["app"]:
        lines += ["", "The app (`/analyze`: one face, both models, three explanations each, faithfulness for the "
                  "Bi-LSTM model; `/select_class`: another class's maps for both models):", "",
                  "| checkpoints | device | start-up s | `/analyze` s (median) | `/select_class` s (median) | file |",
                  "|---|---|---:|---:|---:|---|"]
        for a in t["app"]:
            device = f"{a['device']} ({a['cpu_count']} cores)" if a["device"] == "cpu" else a["device"]
            lines.append(f"| {a['checkpoint']} + {a['baseline']} | {device} | {a['startup_s']:.1f} | "
                         f"{a['analyze_median_s']:.2f} (of {a['analyze_runs']}) | {a['select_class_median_s']:.2f} | "
                         f"[`{a['file']}`]({folder}{a['file']}) |")
    return "\n".join(lines) + "\n"
