"""Ships the default checkpoint pair: the pair chosen on validation (training.records.select_pair) is copied into
checkpoints/ from the float16 weights a study exported, calibrated on val, re-evaluated here, and
checkpoints/README.md is written.

    python -m training.ship --records results/runs --weights DIR --data ../shared/data/ferplus --out checkpoints

The weights must be the ones the records evaluated (their `storage.from_sha256` equals the record's checkpoint
sha256). Each shipped file is evaluated on the split with `fer_explain.evaluate` on this machine, and its
predictions are compared image by image with the record's (float32 weights, usually on the GPU), so the effect of
float16 storage is measured, not assumed. Before that, each file's temperature is fitted on the val split and recorded
in it (`python -m fer_explain calibrate`), so the app and the commands show calibrated probabilities; this changes no
decision. The pair must fit in --max-mb (40 MB) together.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from fer_explain.errors import UserError, run_command
from training.records import Record, load_records, select_pair

NAMES = {"full": "fer-{backbone}-bilstm.safetensors", "baseline": "fer-{backbone}-baseline.safetensors"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", required=True, type=Path)
    p.add_argument("--weights", required=True, type=Path, help="folder of exported .fp16.safetensors files")
    p.add_argument("--data", required=True, help="dataset folder holding the eval split")
    p.add_argument("--split", default="test")
    p.add_argument("--calibration-data", help="dataset folder whose val split the temperature is fitted on "
                                              "(default: --data)")
    p.add_argument("--out", type=Path, default=Path("checkpoints"))
    p.add_argument("--results", type=Path, default=Path("results"), help="where shipped.json goes")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-mb", type=float, default=40.0, help="size limit of the pair together, in 10^6 bytes")
    return p


def find_weights(folder: Path, record: Record, split: str) -> Path:
    from fer_explain.checkpoint import read_metadata

    wanted = record.evals.get(split, {}).get("checkpoint_sha256")
    if wanted is None:
        raise UserError(f"{record.name} has no {split} evaluation in its record; run the study's evaluation first")
    for path in sorted(folder.glob("*.safetensors")):
        try:
            storage = read_metadata(path).get("storage", {})
        except UserError:  # e.g. backbone weights lying in the same folder: not a candidate
            continue
        if storage.get("run") == record.name and storage.get("from_sha256") == wanted:
            return path
    raise UserError(f"no exported weights of {record.name} (sha256 {wanted[:12]}...) in {folder}: rerun its study "
                    "with --export-weights and bring the file back")


def verify(path: Path, record: Record, dataset, data: str, split: str, device) -> dict:
    """This machine's evaluation of the shipped file, and how its predictions differ from the record's."""
    import numpy as np

    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.evaluate import default_batch_size, evaluation_record

    reference = record.evals[split]
    if dataset.fingerprint() != reference["data_fingerprint"]:
        raise UserError(f"the {split} split in {data} is not the one {record.name} was evaluated on "
                        "(other fingerprint)")
    ckpt = load_checkpoint(path, device)
    ours = evaluation_record(ckpt, dataset, device, default_batch_size(device), reference["flip_tta"], data, split,
                             progress=sys.stderr.isatty())
    changed = int((np.asarray(ours["predictions"]) != np.asarray(reference["predictions"])).sum())
    return {"file": path.name, "run": record.name, "sha256": ours["checkpoint_sha256"],
            "bytes": path.stat().st_size, "storage": "float16", "evaluation": {k: v for k, v in ours.items()
                                                                               if k != "predictions"},
            "reference": {"accuracy": reference["accuracy"],
                          "device": reference.get("device_name", reference["device"]),
                          "checkpoint_sha256": reference["checkpoint_sha256"]},
            "predictions_changed": changed, "accuracy_change": ours["accuracy"] - reference["accuracy"]}


def remove_old_pair(folder: Path) -> None:
    """One default pair only: the app and CLI pick it by file name. Files that are not ours are left alone."""
    from fer_explain.checkpoint import read_metadata

    for old in folder.glob("*.safetensors"):
        try:
            read_metadata(old)
        except UserError:
            continue  # not a fer-explain checkpoint: not ours to delete
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)


def main(args: argparse.Namespace) -> dict:
    from fer_explain.calibrate_cli import calibrate_checkpoint
    from fer_explain.checkpoint import read_metadata
    from fer_explain.data import load_split
    from fer_explain.device import pick_device
    from fer_explain.evaluate import default_batch_size, load_classifier
    from training.checkpoint_card import card_markdown

    records = load_records(args.records)
    pair = select_pair(records)
    sources = {v: find_weights(args.weights, pair[v], args.split) for v in ("full", "baseline")}
    total = sum(p.stat().st_size for p in sources.values())
    if total > args.max_mb * 1e6:
        raise UserError(f"the pair is {total / 1e6:.1f} MB together, over the {args.max_mb:g} MB limit")
    device = pick_device(args.device)
    dataset, val = load_split(args.data, args.split), load_split(args.calibration_data or args.data, "val")
    args.out.mkdir(parents=True, exist_ok=True)
    shipped = {}
    # Verified in a staging folder first: a wrong --data or --device must not leave checkpoints/ empty (the app
    # would have no model), so the old pair goes only once the new one has passed.
    with tempfile.TemporaryDirectory(prefix=".ship-", dir=args.out) as staging:
        staged = []
        for variant, source in sources.items():
            target = Path(staging) / NAMES[variant].format(backbone=pair["backbone"])
            shutil.copyfile(source, target)
            _, calibration = calibrate_checkpoint(load_classifier(target, device), val, "val", device,
                                                  default_batch_size(device), progress=sys.stderr.isatty())
            print(f"{target.name}: calibrated on val, T = {calibration['temperature']:.3g}")
            shipped[variant] = verify(target, pair[variant], dataset, args.data, args.split, device)
            staged.append((variant, target))
            e = shipped[variant]
            single_view = e["evaluation"]["single_view_accuracy"]
            print(f"{args.out / target.name}: {args.split} accuracy {100 * e['evaluation']['accuracy']:.2f}% on "
                  f"{device.type} (record: {100 * e['reference']['accuracy']:.2f}% on {e['reference']['device']}); "
                  f"{e['predictions_changed']} of {e['evaluation']['n']} predictions changed"
                  + (f"; without flip TTA {100 * single_view:.2f}%" if single_view is not None else ""))
        remove_old_pair(args.out)
        for variant, target in staged:
            final = target.replace(args.out / target.name)
            shipped[variant]["evaluation"]["checkpoint"] = str(final)  # where it is shipped, not the staging copy
            final.with_suffix(".json").write_text(json.dumps(read_metadata(final), indent=2) + "\n")
    summary = {"selection": {"recipe": pair["recipe"], "backbone": pair["backbone"], "rule": pair["rule"],
                             "candidates": pair["candidates"], "validation_source": pair["validation_source"]},
               "split": args.split, "total_bytes": sum(e["bytes"] for e in shipped.values()),  # as shipped, calibrated
               "files": shipped}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "shipped.json").write_text(json.dumps(summary, indent=2) + "\n")
    study = args.results / "prior_correction.json"  # the decision-rule figures, when measured on these files
    (args.out / "README.md").write_text(card_markdown(summary, records, pair,
                                                      json.loads(study.read_text()) if study.is_file() else None))
    print(f"wrote {args.out / 'README.md'} and {args.results / 'shipped.json'}")
    return summary


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def run() -> None:  # the summary is printed and written; the exit code is 0
        main(args)

    return run_command(run)


if __name__ == "__main__":
    sys.exit(cli())
