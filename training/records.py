"""Run records: what a finished training run leaves behind that the results are built from, without its weights.

A record is a run folder (or its copy under results/runs/, as unpacked from `training.study --pack`) holding
model.json (the checkpoint's metadata: config, recipe, best-epoch validation metrics, training summary), log.jsonl,
eval_<split>.json (training.study / `fer_explain evaluate --json`) and optionally study.json. Everything a table
shows is read from these files; the variant name is derived from the stored config, never from folder names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fer_explain.errors import UserError

VARIANT_ORDER = ("full", "baseline", "full_no_spatial", "full_no_channel", "baseline_no_spatial",
                 "baseline_no_channel", "full_no_class_weighting")


@dataclass
class Record:
    path: Path
    recipe: str
    backbone: str
    variant: str
    seed: int
    val: dict
    evals: dict[str, dict]
    training: dict
    data: dict = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    study: dict | None = None

    @property
    def group(self) -> tuple[str, str]:
        return self.recipe, self.backbone

    @property
    def evaluated_val_accuracy(self) -> float | None:
        """The checkpoint's val accuracy as `fer_explain evaluate` measures it (eval_val.json); None without one."""
        return self.evals["val"]["accuracy"] if "val" in self.evals else None

    @property
    def name(self) -> str:
        return f"{self.recipe}/{self.backbone}/{self.variant}/seed{self.seed}"

    @property
    def epochs_run(self) -> int | None:
        return self.training.get("epochs_run")

    @property
    def time_limited(self) -> bool:
        """Stopped by --time-limit before its schedule ended (early stopping is part of a recipe; this is not)."""
        return bool(self.training.get("time_limited"))


def trained_alike(a: Record, b: Record) -> bool:
    """Whether two runs can be set side by side: both ran the same number of epochs, or neither was cut short by the
    time limit. A Bi-LSTM stopped at epoch 3 beside a faster baseline stopped at epoch 6 would measure the time
    limit and the models' speeds, not the models."""
    return a.epochs_run == b.epochs_run or not (a.time_limited or b.time_limited)


def variant_of(model_config: dict, recipe: dict, arguments: dict) -> str:
    """The study's variant key (training.study.VARIANTS) that this config and run correspond to.

    The class-weighting ablation is a run started with `--no-class-weighting`: a recipe that itself trains without
    class weights (frozen_backbone_tail_long_fp32_soft) gives its `full` and `baseline` runs, not ablations of them.
    Records written before that flag was stored fall back to the recipe's setting."""
    name = model_config["variant"]
    if model_config.get("spatial_attention") == "none":
        name += "_no_spatial"
    if model_config.get("channel_attention") == "none":
        name += "_no_channel"
    if arguments.get("no_class_weighting", not recipe.get("class_weighting", True)):
        name += "_no_class_weighting"
    return name


def read_record(run_dir: Path) -> Record:
    try:
        meta = json.loads((run_dir / "model.json").read_text())
        training = meta["training"]
        recipe, arguments = training["recipe"], training["arguments"]
        record = Record(path=run_dir, recipe=recipe["name"], backbone=meta["model_config"]["backbone"],
                        variant=variant_of(meta["model_config"], recipe, arguments), seed=int(arguments["seed"]),
                        val=meta["validation"], evals={}, training=training, data=meta.get("data") or {})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{run_dir}/model.json is not a training run's checkpoint metadata ({type(e).__name__}: {e})"
                        ) from None
    for path in sorted(run_dir.glob("eval_*.json")):
        record.evals[path.stem[len("eval_"):]] = json.loads(path.read_text())
    if (run_dir / "log.jsonl").is_file():
        record.log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    if (run_dir / "study.json").is_file():
        record.study = json.loads((run_dir / "study.json").read_text())
    return record


def load_records(root: str | Path) -> list[Record]:
    """Every run under `root` (any depth), sorted by recipe, backbone, variant order and seed."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no run records at {root}: unpack a study's records there "
                        f"(tar -xzf records.tar.gz -C {root}) or point at a runs folder")
    records = [read_record(p.parent) for p in sorted(root.rglob("model.json"))]
    if not records:
        raise UserError(f"{root} holds no run records (no model.json below it)")
    seen: dict[str, Path] = {}
    for r in records:
        if r.name in seen:
            raise UserError(f"two runs are both {r.name}: {seen[r.name]} and {r.path}; keep one")
        seen[r.name] = r.path
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return sorted(records, key=lambda r: (r.recipe, r.backbone, order.get(r.variant, len(order)), r.variant, r.seed))


def by_variant(records: list[Record]) -> dict[tuple[str, str], dict[str, dict[int, Record]]]:
    """(recipe, backbone) -> variant -> seed -> record."""
    out: dict[tuple[str, str], dict[str, dict[int, Record]]] = {}
    for r in records:
        out.setdefault(r.group, {}).setdefault(r.variant, {})[r.seed] = r
    return out


def validation_source(records) -> str:
    """Which validation accuracy a selection over `records` compares: "evaluate" when every run has eval_val.json
    (its checkpoint evaluated on val as inference runs it: float32, the recipe's flip TTA), else "training" (what
    training recorded at its best epoch). Never a mix: recipes that cache bfloat16 features record a val accuracy
    that differs from their float32 checkpoint's (the latter 0.4 ± 0.6 pp lower over our CPU runs, by up to 1.7 pp),
    so a mix would compare figures of two kinds."""
    return "evaluate" if all(r.evaluated_val_accuracy is not None for r in records) else "training"


def val_accuracy(record: Record, source: str) -> float:
    return record.evaluated_val_accuracy if source == "evaluate" else record.val["accuracy"]


def val_best(runs, source: str | None = None) -> Record:
    """The run with the best validation accuracy (ties: the lower seed); the rule every selection here uses."""
    runs = list(runs)
    source = source or validation_source(runs)
    return max(runs, key=lambda r: (val_accuracy(r, source), -r.seed))


def complete_runs(runs: dict[int, Record]) -> dict[int, Record]:
    """The runs that trained their recipe's whole schedule; all of them when the time limit cut every one. A run cut
    at epoch 5 of 8 measures the time limit as much as the recipe, so the mean that chooses the shipped recipe leaves
    it out when it can (Table I keeps such runs, marked as cut)."""
    return {seed: r for seed, r in runs.items() if not r.time_limited} or runs


def select_pair(records: list[Record]) -> dict:
    """The pair to ship, chosen on validation only: the (recipe, backbone) whose `full` runs have the best mean
    validation accuracy (complete_runs) among those that also have `baseline` runs, then each variant's val-best
    seed (ties: the lower seed), cut runs included. One validation source (see validation_source) for every
    candidate run."""
    groups = {g: v for g, v in by_variant(records).items() if "full" in v and "baseline" in v}
    if not groups:
        raise UserError("no recipe/backbone has both full and baseline runs, so there is no pair to choose")
    source = validation_source(r for v in groups.values() for variant in ("full", "baseline")
                               for r in v[variant].values())

    counted = {g: complete_runs(v["full"]) for g, v in groups.items()}
    means = {g: sum(val_accuracy(r, source) for r in runs.values()) / len(runs) for g, runs in counted.items()}
    recipe, backbone = max(means, key=means.get)
    chosen = {variant: val_best(groups[(recipe, backbone)][variant].values(), source)
              for variant in ("full", "baseline")}
    what = ("the val accuracy of each checkpoint as `fer_explain evaluate` computes it (eval_val.json)"
            if source == "evaluate" else "the val accuracy training recorded at each run's best epoch")
    return {"recipe": recipe, "backbone": backbone, "full": chosen["full"], "baseline": chosen["baseline"],
            "candidates": {f"{g[0]}/{g[1]}": mean for g, mean in means.items()},
            # a mean of one run is not a mean of three: how many full runs each candidate's figure is over
            "candidate_runs": {f"{g[0]}/{g[1]}": len(runs) for g, runs in counted.items()},
            "validation_source": source,
            "rule": "the recipe/backbone with the best mean validation accuracy of its full (Bi-LSTM) runs (those "
                    "the time limit cut short left out, unless it cut them all), then "
                    "the val-best seed of full and of baseline; the test split is never looked at; validation "
                    f"accuracy here is {what}"}
