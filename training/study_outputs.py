"""What a study makes of its finished runs (training/study.py): each best checkpoint evaluated on val and on the
eval split exactly as `fer_explain evaluate` does (eval_<split>.json), float16 copies of each variant's val-best
seed for the trip back from a GPU machine, a pack of the runs' small files, and the summary table it prints.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from training.records import Record, by_variant, read_record, val_best, validation_source

if TYPE_CHECKING:
    from training.study import Job

RECORD_FILES = ("model.json", "log.jsonl", "study.json", "curves.png", "train.log")


def evaluate_runs(jobs: list[Job], args: argparse.Namespace, eval_format: str | None) -> None:
    """eval_val.json and eval_<split>.json for each finished run whose checkpoint changed since its last evaluation.
    val is evaluated too because training's own val figure is not always what inference gets (cached bfloat16
    features), and the pair is chosen on val (training.records.validation_source)."""
    import torch

    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.device import pick_device
    from fer_explain.evaluate import default_batch_size, evaluation_record, file_sha256

    finished = [j for j in jobs if (j.run_dir / "model.safetensors").is_file()]
    sha = {j.name: file_sha256(j.run_dir / "model.safetensors") for j in finished}
    splits = {"val": args.data} | ({args.eval_split: args.eval_data or args.data} if args.eval_split != "val" else {})
    todo = {j.name: [s for s in splits if not _evaluated(j.run_dir / f"eval_{s}.json", sha[j.name])]
            for j in finished}
    if not any(todo.values()):  # everything evaluated already: no device, no data
        return
    device = pick_device(args.device)
    batch = default_batch_size(device)
    datasets = {s: load_split(splits[s], s, eval_format or "auto") for s in splits
                if any(s in left for left in todo.values())}
    for job in finished:
        if not todo[job.name]:
            continue
        ckpt = load_checkpoint(job.run_dir, device)
        tta = bool(ckpt.metadata.get("training", {}).get("recipe", {}).get("flip_tta", False))
        for split in todo[job.name]:
            record = evaluation_record(ckpt, datasets[split], device, batch, tta, splits[split], split, progress=False)
            (job.run_dir / f"eval_{split}.json").write_text(json.dumps(record, indent=2) + "\n")
        del ckpt
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _evaluated(path: Path, checkpoint_sha256: str) -> bool:
    return path.is_file() and json.loads(path.read_text()).get("checkpoint_sha256") == checkpoint_sha256


def finished_records(jobs: list[Job]) -> dict[str, Record]:
    """job name -> its run record, for the jobs whose run left a checkpoint."""
    return {j.name: read_record(j.run_dir) for j in jobs if (j.run_dir / "model.json").is_file()}


def export_weights(records: list[Record], out_dir: Path, max_mib: float) -> list[Path]:
    """float16 copies of each backbone's val-best seed of `full` and of `baseline` (chosen on validation only)."""
    import torch

    from fer_explain.checkpoint import load_checkpoint, save_checkpoint
    from fer_explain.evaluate import file_sha256

    written = []
    for group, variants in by_variant(records).items():
        # one validation source for both variants, as training.records.select_pair uses
        source = validation_source(r for v in ("full", "baseline") for r in variants.get(v, {}).values())
        for variant in ("full", "baseline"):
            if variant not in variants:
                continue
            record = val_best(variants[variant].values(), source)
            ckpt = load_checkpoint(record.path)
            # not its temperature: T was fitted to the float32 weights; training.ship refits it on the copy it ships
            extra = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "model_config", "classes",
                                                                          "preprocessing", "calibration")}
            extra["storage"] = {"dtype": "float16", "from": str(ckpt.path), "from_sha256": file_sha256(ckpt.path),
                                "run": record.name}
            path = out_dir / f"{record.recipe}-{record.backbone}-{variant}-seed{record.seed}.fp16.safetensors"
            save_checkpoint(path, ckpt.model, ckpt.preprocessing, extra, dtype=torch.float16)
            path.with_suffix(".json").unlink()  # the metadata is in the header; keep the file count low
            mib = path.stat().st_size / 2**20
            if mib > max_mib:
                path.unlink()
                print(f"[study] not exported: {path.name} is {mib:.1f} MiB (> {max_mib:g})", file=sys.stderr)
                continue
            written.append(path)
    return written


def pack(jobs: list[Job], runs_dir: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for job in jobs:
            for path in sorted(job.run_dir.glob("eval_*.json")) + [job.run_dir / f for f in RECORD_FILES]:
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(runs_dir)))
    return out


def summary_table(jobs: list[Job], records: dict[str, Record], split: str) -> str:
    # best/run: the kept (val-best) epoch and how many ran; val acc: what training recorded at that epoch;
    # val eval: that checkpoint evaluated as inference runs it
    lines = [f"{'run':<40} {'best/run':>9} {'val acc':>8} {'val eval':>8} {split + ' acc':>9} {'img/s':>7} "
             f"{'wall s':>7}  notes"]
    for job in jobs:
        record = records.get(job.name)
        if record is None:
            lines.append(f"{job.name:<40} (no checkpoint)")
            continue
        training = record.training
        test_acc, val_eval = (f"{100 * record.evals[s]['accuracy']:.2f}" if s in record.evals else "-"
                              for s in (split, "val"))
        notes = [n for n, flag in (("early stop", training.get("early_stopped")),
                                   ("time limit", training.get("time_limited"))) if flag]
        lines.append(f"{job.name:<40} {training['best_epoch']:>4}/{training['epochs_run']:<4} "
                     f"{100 * record.val['accuracy']:8.2f} {val_eval:>8} {test_acc:>9} "
                     f"{training['mean_images_per_s'] or 0:7.0f} {training['wall_time_s']:7.0f}  {', '.join(notes)}")
    return "\n".join(lines)
