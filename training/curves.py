"""Training curves (loss; accuracy and macro F1) per epoch from a run's log.jsonl, as a PNG.

Uses matplotlib's object API with the Agg canvas, so no pyplot global state and no display are involved.

    python -m training.curves RUN_DIR/log.jsonl [--out curves.png]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_explain.errors import UserError


def read_rows(log_path: str | Path) -> list[dict]:
    path = Path(log_path)
    if not path.is_file():
        raise UserError(f"training log not found: {path}")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not a JSON-lines training log ({e})") from None
    if not rows:
        raise UserError(f"{path} holds no epochs yet")
    return rows


def plot_curves(log_path: str | Path, out_path: str | Path, best_epoch: int | None = None) -> Path:
    """Draw the log's curves into `out_path`; `best_epoch` gets a vertical marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = read_rows(log_path)
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, score_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in rows], "o-", label="validation")
    loss_ax.set(title="cross-entropy loss", xlabel="epoch", ylabel="loss")
    for key, label in (("train_accuracy", "train accuracy"), ("val_accuracy", "val accuracy"),
                       ("val_mean_class_accuracy", "val mean class accuracy"), ("val_macro_f1", "val macro F1")):
        score_ax.plot(epochs, [100 * r[key] for r in rows], "o-", label=label)
    score_ax.set(title="accuracy / F1", xlabel="epoch", ylabel="%", ylim=(0, 100))
    for ax in (loss_ax, score_ax):
        if best_epoch:
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    return out_path


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log", help="log.jsonl of a training run")
    p.add_argument("--out", help="PNG path (default: curves.png beside the log)")
    p.add_argument("--best-epoch", type=int)
    args = p.parse_args(argv)
    try:
        out = plot_curves(args.log, args.out or Path(args.log).with_name("curves.png"), args.best_epoch)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
