"""A study: the training runs of one recipe (backbones x variants x seeds) run side by side on one device, each
best checkpoint then evaluated on a held-out split, and everything small packed for the trip back from a GPU machine.

    python -m training.study --config training/configs/paper.yaml --data data/ferplus \
        --backbones resnet50 mobilenet_v2 --variants full baseline --seeds 0 1 2 --runs-dir runs --parallel 6 \
        [--epochs N] [--time-limit S] [--backbone-weights mobilenet_v2=FILE] \
        [--eval-data ../shared/data/ferplus --eval-split test] [--pack records.tar.gz] [--export-weights DIR]

RUN_DIR = RUNS_DIR/<recipe>/<backbone>/<variant>/seed<S>: training/train.py's run folder plus train.log (its
output), study.json (how it was run: concurrency, wall time, exit code), eval_val.json and eval_<split>.json (the
best checkpoint evaluated as `fer_explain evaluate` does; val is the one the pair is chosen on). Runs are separate
`training.train` processes, so a launch-bound small model on a big GPU shares it with others. The eval split never
chooses anything: each run keeps its best epoch on validation, and the exported pair is each variant's val-best
seed. Finished runs are skipped and interrupted ones resume, so rerunning the command continues the study.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from fer_explain.errors import UserError, run_command
from training.recipe import CHOICES, load_recipe
from training.records import Record, by_variant, read_record, val_best, validation_source

REPO = Path(__file__).resolve().parents[1]
# variant -> (description, training flags): the paper's Table III rows plus the class-weighting ablation
VARIANTS = {
    "full": ("Bi-LSTM + channel + spatial attention (full)", []),
    "baseline": ("GAP + channel + spatial attention (baseline)", ["--variant", "baseline"]),
    "full_no_spatial": ("Bi-LSTM + channel attention", ["--spatial-attention", "none"]),
    "full_no_channel": ("Bi-LSTM + spatial attention", ["--channel-attention", "none"]),
    "baseline_no_spatial": ("GAP + channel attention", ["--variant", "baseline", "--spatial-attention", "none"]),
    "baseline_no_channel": ("GAP + spatial attention", ["--variant", "baseline", "--channel-attention", "none"]),
    "full_no_class_weighting": ("full, unweighted cross-entropy", ["--no-class-weighting"]),
}
RECORD_FILES = ("model.json", "log.jsonl", "study.json", "curves.png", "train.log")
MIN_LAUNCH_SECONDS = 60  # a run launched with less time than this left would not finish one epoch
# A run still going this long after the time limit is stopped, so that evaluation and packing still happen before
# the machine's own limit kills everything. It keeps its best checkpoint so far (written atomically each time).
KILL_GRACE_SECONDS = 45


@dataclass
class Job:
    backbone: str
    variant: str
    seed: int
    run_dir: Path
    argv: list[str]
    epochs: int  # as asked for now: a rerun with more epochs extends a finished run

    @property
    def name(self) -> str:
        return f"{self.backbone}/{self.variant}/seed{self.seed}"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe YAML shared by every run")
    p.add_argument("--data", required=True, help="dataset folder with the train and val splits")
    p.add_argument("--backbones", nargs="+", required=True, choices=CHOICES["backbone"])
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["full", "baseline"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs-dir", required=True, type=Path)
    p.add_argument("--parallel", type=int, default=1, help="training processes at once (they share the device)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--limit-train", type=int)
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="for the whole training phase: runs stop after their last epoch that fits, none starts late, "
                        f"and one still going {KILL_GRACE_SECONDS} s later is stopped")
    p.add_argument("--backbone-weights", nargs="+", default=[], metavar="BACKBONE=FILE",
                   help="initial weights per backbone, e.g. mobilenet_v2=weights/mobilenet_v2.safetensors")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--data-format")
    p.add_argument("--eval-data", help="dataset folder with the eval split (default: --data)")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--pack", type=Path, help="write the runs' small files (no weights) to this .tar.gz")
    p.add_argument("--export-weights", type=Path, metavar="DIR",
                   help="write float16 copies of each backbone's val-best full and baseline checkpoints here")
    p.add_argument("--export-max-mib", type=float, default=16.0, help="skip exported files larger than this")
    return p


def _weights_by_backbone(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        backbone, sep, file = item.partition("=")
        if not sep or backbone not in CHOICES["backbone"] or not file:
            raise UserError(f"--backbone-weights takes BACKBONE=FILE with BACKBONE one of "
                            f"{', '.join(CHOICES['backbone'])}; got {item!r}")
        if not Path(file).is_file():
            raise UserError(f"--backbone-weights: file not found: {file}")
        out[backbone] = file
    return out


def plan_jobs(args: argparse.Namespace, recipe: dict) -> list[Job]:
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds repeats a seed: {args.seeds}")
    if args.parallel < 1:
        raise UserError(f"--parallel must be at least 1, not {args.parallel}")
    weights = _weights_by_backbone(args.backbone_weights)
    jobs = []
    for backbone in args.backbones:  # in the order given: put the slowest first so it is not left running alone
        for variant in args.variants:
            for seed in args.seeds:
                run_dir = args.runs_dir / recipe["name"] / backbone / variant / f"seed{seed}"
                argv = ["--config", str(args.config), "--data", str(args.data), "--out", str(run_dir), "--backbone",
                        backbone, "--seed", str(seed), "--device", args.device, *VARIANTS[variant][1],
                        "--feature-cache", str(args.runs_dir / "feature_cache")]  # used by freeze_backbone recipes
                for flag, value in (("--epochs", args.epochs), ("--limit-train", args.limit_train),
                                    ("--data-format", args.data_format), ("--backbone-weights", weights.get(backbone))):
                    if value is not None:
                        argv += [flag, str(value)]
                jobs.append(Job(backbone, variant, seed, run_dir, argv, args.epochs or recipe["epochs"]))
    return jobs


def _launch(job: Job, time_left: float | None, threads: int) -> subprocess.Popen:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    argv = [*job.argv, *(["--time-limit", f"{max(1.0, time_left):.0f}"] if time_left is not None else [])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    with open(job.run_dir / "train.log", "ab") as log:  # the child keeps its own handle
        log.write(f"$ python -m training.train {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen([sys.executable, "-m", "training.train", *argv], stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO, env=env)


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.is_file() else []
    return lines[-1][:300] if lines else "(no output)"


def _finished(job: Job) -> bool:
    from training.resume import read_resume_state

    try:
        saved = read_resume_state(job.run_dir)
    except UserError:
        return False  # training.train says what is wrong with it
    return saved is not None and (job.run_dir / "study.json").is_file() and (
        saved["early_stopped"] or saved["epoch"] >= job.epochs)


def train_all(jobs: list[Job], parallel: int, time_limit: float | None) -> dict[str, int | None]:
    """Run every job, at most `parallel` at once; returns job name -> exit code (None: never started)."""
    started, pending, running, codes = time.perf_counter(), list(jobs), {}, {}
    threads = max(1, (os.cpu_count() or 1) // min(parallel, len(jobs) or 1))
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            if _finished(job):  # keep its study.json: it says how the run was actually trained
                codes[job.name] = 0
                print(f"[study] already finished: {job.name}", file=sys.stderr)
                continue
            left = None if time_limit is None else time_limit - (time.perf_counter() - started)
            if left is not None and left < MIN_LAUNCH_SECONDS:
                codes[job.name] = None
                print(f"[study] not started, out of time: {job.name}", file=sys.stderr)
                continue
            running[job.name] = (job, _launch(job, left, threads), time.perf_counter(), len(running) + 1)
            print(f"[study] started {job.name} ({len(running)} running)", file=sys.stderr)
        overdue = time_limit is not None and time.perf_counter() - started > time_limit + KILL_GRACE_SECONDS
        for name, (job, proc, t0, concurrent) in list(running.items()):
            if proc.poll() is None and overdue:
                print(f"[study] stopping {name}: still running {KILL_GRACE_SECONDS} s after the time limit",
                      file=sys.stderr)
                proc.terminate()
                proc.wait()
            if proc.poll() is None:
                continue
            del running[name]
            codes[name] = proc.returncode
            seconds = time.perf_counter() - t0
            (job.run_dir / "study.json").write_text(json.dumps(
                {"returncode": proc.returncode, "seconds": round(seconds, 1), "parallel": parallel,
                 "running_at_start": concurrent, "time_limit_s": time_limit, "stopped_overdue": overdue},
                indent=2) + "\n")
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            print(f"[study] {status}: {name} in {seconds:.0f} s: {_last_line(job.run_dir / 'train.log')}",
                  file=sys.stderr)
        time.sleep(0.5)
    return codes


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
            extra = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "model_config", "classes",
                                                                          "preprocessing")}
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
    # val acc: what training recorded at the best epoch; val eval: that checkpoint evaluated as inference runs it
    lines = [f"{'run':<40} {'epochs':>9} {'val acc':>8} {'val eval':>8} {split + ' acc':>9} {'img/s':>7} "
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


def main(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.config, {"data_format": args.data_format})
    if args.time_limit is not None and args.time_limit <= 0:
        raise UserError(f"--time-limit must be a positive number of seconds, not {args.time_limit}")
    jobs = plan_jobs(args, recipe)
    codes = train_all(jobs, args.parallel, args.time_limit)
    evaluate_runs(jobs, args, args.data_format)
    records = finished_records(jobs)
    print(summary_table(jobs, records, args.eval_split))
    if args.export_weights:
        for path in export_weights(list(records.values()), args.export_weights, args.export_max_mib):
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.pack:
        print(f"wrote {pack(jobs, args.runs_dir, args.pack)}")
    failed = [name for name, code in codes.items() if code != 0]
    if failed:
        print(f"error: {len(failed)} of {len(jobs)} runs did not finish: {', '.join(failed)} (see their train.log); "
              "rerun the same command to continue them", file=sys.stderr)
        return 1
    return 0


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return run_command(lambda: main(args), "rerun the same command to continue the study")


if __name__ == "__main__":
    sys.exit(cli())
