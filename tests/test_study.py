"""From runs to published numbers, as a GPU session does it, on a tiny CPU study: `training.study` trains side by
side, evaluates on a test split kept in another folder, packs the records and exports float16 weights;
`training.results` rebuilds every table from the unpacked records; `training.ship` picks the pair on validation,
re-evaluates it and writes the model card."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from fer_explain.errors import UserError
from test_training import QUICK, run_module, write_ferplus_npz
from training.records import select_pair


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    data = write_ferplus_npz(root / "data", {"train_0": 2, "val": 1, "test": 1})
    (root / "test_only").mkdir()
    shutil.move(data / "test.npz", root / "test_only/test.npz")  # as on the GPU machine: test kept apart
    argv = ["training.study", "--config", str(QUICK), "--data", str(data), "--eval-data", str(root / "test_only"),
            "--backbones", "resnet18", "--variants", "full", "baseline", "full_no_spatial", "--seeds", "0", "1",
            "--epochs", "1", "--limit-train", "4", "--device", "cpu", "--parallel", "2", "--runs-dir",
            str(root / "runs"), "--time-limit", "900", "--pack", str(root / "out/records.tar.gz"),
            "--export-weights", str(root / "out"), "--export-max-mib", "100"]
    done = run_module(*argv)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resnet18/full_no_spatial/seed1" in done.stdout  # the summary table
    assert "best/run" in done.stdout and "   1/1    " in done.stdout  # kept epoch / epochs run, not "epochs"
    how = (root / "runs/quick/resnet18/full/seed0/study.json").read_text()
    done = run_module(*argv)  # rerunning continues the study: nothing left to train, how it was trained is kept
    assert done.returncode == 0 and done.stderr.count("already finished") == 6, done.stderr[-3000:]
    assert (root / "runs/quick/resnet18/full/seed0/study.json").read_text() == how
    return root


def test_study_packs_records_without_weights_and_exports_the_val_best_pair(study):
    from fer_explain.checkpoint import read_metadata

    with tarfile.open(study / "out/records.tar.gz") as tar:
        names = tar.getnames()
    assert "quick/resnet18/baseline/seed1/eval_test.json" in names and "quick/resnet18/full/seed0/model.json" in names
    assert "quick/resnet18/baseline/seed1/eval_val.json" in names  # the split the pair is chosen on
    assert not any(n.endswith(".safetensors") for n in names)
    exported = sorted(p.name for p in (study / "out").glob("*.fp16.safetensors"))
    assert [n.split("-")[2] for n in exported] == ["baseline", "full"]  # no ablation variant is a shipping candidate
    # each run ends calibrated on val; its float16 copy does not carry the float32 weights' temperature
    run_meta = json.loads((study / "runs/quick/resnet18/full/seed0/model.json").read_text())
    assert run_meta["calibration"]["split"] == "val"
    assert not any("calibration" in read_metadata(study / "out" / n) for n in exported)
    record = json.loads((study / "runs/quick/resnet18/full/seed0/eval_test.json").read_text())
    assert record["split"] == "test" and len(record["predictions"]) == record["n"] == 4
    run = study / "runs/quick/resnet18/baseline/seed1"
    val = json.loads((run / "eval_val.json").read_text())
    # float32 end to end here, so evaluating the checkpoint gives what training recorded at its kept epoch
    assert val["split"] == "val" and val["n"] == 4 and len(val["predictions"]) == 4
    assert val["accuracy"] == pytest.approx(json.loads((run / "model.json").read_text())["validation"]["accuracy"])
    assert json.loads((study / "runs/quick/resnet18/full/seed0/study.json").read_text())["parallel"] == 2


def test_results_and_ship_from_unpacked_records(study, tmp_path):
    from fer_explain.checkpoint import read_metadata
    from fer_explain.data import load_split

    records = tmp_path / "results/runs"
    records.mkdir(parents=True)
    with tarfile.open(study / "out/records.tar.gz") as tar:
        tar.extractall(records, filter="data")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start -->\nold\n<!-- results:end -->\n<!-- latency:start -->\nold latency\n"
                      "<!-- latency:end -->\ntail\n")
    bench = tmp_path / "results/bench"
    bench.mkdir()
    (bench / "other.json").write_text('{"accuracy": 0.5}')  # not a bench file: refused before any table is written
    done = run_module("training.results", "--records", str(records), "--out", str(tmp_path / "r1"),
                      "--bench", str(bench), "--readme", str(readme))
    assert done.returncode == 2 and "not a file of `fer_explain bench --json`" in done.stderr
    assert not (tmp_path / "r1").exists()
    (bench / "other.json").unlink()
    done = run_module("fer_explain", "bench", "--backbone", "resnet18", "--device", "cpu", "--runs", "1", "--warmup",
                      "0", "--batch", "2", "--methods", "gradcam", "--json", str(bench / "cpu_resnet18.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    stale = tmp_path / "results/confusion_old_recipe_resnet18_full.png"  # from a pair no longer selected
    stale.write_bytes(b"png")
    (tmp_path / "results/faithfulness.md").write_text("# written by training.faithfulness\n")
    done = run_module("training.results", "--records", str(records), "--out", str(tmp_path / "r0"),
                      "--readme", str(tmp_path / "READNE.md"))  # a typo: caught before any table is written
    assert done.returncode == 2 and "READNE.md is not a file" in done.stderr and not (tmp_path / "r0").exists()
    done = run_module("training.results", "--records", str(records), "--out", str(tmp_path / "results"),
                      "--bench", str(bench), "--readme", str(readme))
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "results"
    for stem in ("table1_overall", "table2_per_class", "table3_ablation", "table4_cost", "training_runs"):
        assert json.loads((out / f"{stem}.json").read_text()) is not None and (out / f"{stem}.md").is_file()
    t1 = json.loads((out / "table1_overall.json").read_text())
    assert [(r["variant"], r["seeds"]) for r in t1["rows"]] == [("full", [0, 1]), ("baseline", [0, 1]),
                                                                ("full_no_spatial", [0, 1])]
    assert "claimed, not measured" in (out / "table1_overall.md").read_text()
    for stem in ("table1_overall", "table3_ablation", "training_runs"):  # every row as wide as its table's header
        for block in (out / f"{stem}.md").read_text().split("\n\n"):
            rows = [line for line in block.splitlines() if line.startswith("|")]
            assert len({line.count("|") for line in rows}) <= 1, (stem, block)
    runs = {r["run"]: r for r in json.loads((out / "training_runs.json").read_text())["rows"]}
    model = json.loads((records / "quick/resnet18/full/seed1/model.json").read_text())
    last = json.loads((records / "quick/resnet18/full/seed1/log.jsonl").read_text().splitlines()[-1])
    assert runs["quick/resnet18/full/seed1"]["train_accuracy_last"] == last["train_accuracy"]
    assert runs["quick/resnet18/full/seed1"]["val_accuracy_best"] == model["validation"]["accuracy"]
    val = json.loads((records / "quick/resnet18/full/seed1/eval_val.json").read_text())
    assert runs["quick/resnet18/full/seed1"]["val_accuracy_evaluate"] == val["accuracy"]
    assert all(r["val_accuracy_evaluate"]["n"] == 2 for r in t1["rows"])
    assert json.loads((out / "selection.json").read_text())["validation_source"] == "evaluate"
    assert "Bi-LSTM + channel attention" in (out / "table3_ablation.md").read_text()
    # Table III's Δ vs full: the ablation minus the full model, seed by seed, from each run's eval_test.json
    t3 = {r["variant"]: r for r in json.loads((out / "table3_ablation.json").read_text())["groups"][0]["rows"]}
    test_acc = {(v, s): json.loads((records / f"quick/resnet18/{v}/seed{s}/eval_test.json").read_text())["accuracy"]
                for v in ("full", "full_no_spatial") for s in (0, 1)}
    delta = t3["full_no_spatial"]["vs_full"]["accuracy"]
    assert delta["seeds"] == [0, 1] and t3["full"]["vs_full"] is None
    assert delta["values"] == pytest.approx([test_acc["full_no_spatial", s] - test_acc["full", s] for s in (0, 1)])
    assert (out / "confusion_quick_resnet18_full.png").is_file() and (out / "curves_quick_resnet18.png").is_file()
    assert not stale.exists() and stale.name not in (out / "README.md").read_text()
    assert "[`faithfulness.md`](faithfulness.md): written by `python -m training.faithfulness`" in \
        (out / "README.md").read_text() and (out / "faithfulness.md").is_file()  # listed, and left alone
    text = readme.read_text()
    assert "old" not in text and "| quick | resnet18 | 2 |" in text and text.endswith("tail\n")
    assert "**Ablation** (Table III)" in text
    assert "| quick | resnet18 | Bi-LSTM + channel attention (`full_no_spatial`) | 0, 1 |" in text
    index = (out / "README.md").read_text()  # each verdict's reasoning, sentence by sentence
    assert "the Bi-LSTM changes test accuracy by" in index and "**Ablation, quick recipe, resnet18**" in index
    assert "old latency" not in text and "| resnet18 Bi-LSTM (random init) | cpu (" in text
    assert "(results/bench/cpu_resnet18.json)" in text
    assert "(bench/cpu_resnet18.json)" in (out / "latency.md").read_text()  # links relative to each file
    assert json.loads((out / "latency.json").read_text())["bench"][0]["file"] == "cpu_resnet18.json"

    val_fingerprint = load_split(study / "data", "val").fingerprint()
    done = run_module("training.ship", "--records", str(records), "--weights", str(study / "out"), "--data",
                      str(study / "test_only"), "--out", str(tmp_path / "checkpoints"), "--results", str(out),
                      "--max-mb", "100", "--device", "cpu", "--calibration-data", str(study / "data"))
    assert done.returncode == 0, done.stderr[-3000:]
    shipped = json.loads((out / "shipped.json").read_text())
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.safetensors"))
    assert names == ["fer-resnet18-baseline.safetensors", "fer-resnet18-bilstm.safetensors"]
    assert shipped["total_bytes"] == sum((tmp_path / "checkpoints" / n).stat().st_size for n in names)
    for variant in ("full", "baseline"):
        f = shipped["files"][variant]
        assert f["evaluation"]["n"] == 4 and 0 <= f["predictions_changed"] <= 4
        assert f["sha256"] in (tmp_path / "checkpoints/README.md").read_text()
    assert shipped["files"]["full"]["evaluation"]["checkpoint"] == str(tmp_path / "checkpoints" / names[1])
    for name in names:  # calibrated on val before the evaluation, which then shows the calibrated probabilities
        calibration = read_metadata(tmp_path / "checkpoints" / name)["calibration"]
        variant = "baseline" if "baseline" in name else "full"
        assert calibration["split"] == "val" and calibration["data_fingerprint"] == val_fingerprint
        assert shipped["files"][variant]["evaluation"]["temperature"] == calibration["temperature"] != 1
    # the quick recipe evaluates without flip TTA
    assert shipped["files"]["full"]["evaluation"]["single_view_accuracy"] is None
    card = (tmp_path / "checkpoints/README.md").read_text()
    assert "Not measured for these files yet" in card  # no prior-correction study yet
    ece = shipped["files"]["full"]["evaluation"]["calibration"]["ece"]
    assert "Calibration on test, one view as the app shows it" in card and f"full ECE {100 * ece:.2f} %" in card
    t = shipped["files"]["full"]["evaluation"]["temperature"]
    assert f"temperature fitted on val (`python -m fer_explain calibrate`, run by training.ship): full T = {t:.3g}" \
        in card

    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    done = run_module("training.ship", "--records", str(records), "--weights", str(study / "out"), "--data",
                      str(study / "data"), "--out", str(tmp_path / "checkpoints"), "--results", str(out),
                      "--max-mb", "100", "--device", "cpu")  # that folder has no test split
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == before  # the pair survives

    done = run_module("training.ship", "--records", str(records), "--weights", str(study / "out"), "--data",
                      str(study / "test_only"), "--out", str(tmp_path / "c2"), "--results", str(tmp_path / "r2"))
    assert done.returncode == 2 and "over the 40 MB limit" in done.stderr  # resnet18 pair in fp16: ~52 MB


def test_the_card_quotes_the_prior_correction_study_of_the_shipped_files_only():
    from fer_explain.classes import CLASSES
    from training.checkpoint_card import decision_rule_lines

    summary = {"files": {"full": {"file": "a.safetensors", "sha256": "aa"},
                         "baseline": {"file": "b.safetensors", "sha256": "bb"}}}

    def measured(accuracy):
        return {"accuracy": accuracy, "mean_class_accuracy": 0.5, "macro_f1": 0.4,
                "recall": dict(zip(CLASSES, [0.9, 0.9, 0.6, 0.8, 0.3, 0.25, 0.7, 0.125]))}

    study = {"flip_tta": False, "models": [
        {"sha256": sha, "tau": tau, "test": {"as_trained": measured(0.85), "balanced": measured(accuracy)}}
        for sha, tau, accuracy in (("aa", 0.7, 0.79), ("bb", 0.65, 0.8361))]}
    text = "\n".join(decision_rule_lines(summary, study))
    assert "| full | 0 | 85.00 | 50.00 | 40.00 | 12.50 | 25.00 | 30.00 |" in text
    assert "| full | 0.7 | 79.00 |" in text and "| baseline | 0.65 | 83.61 |" in text and "one view" in text
    for stale in ({**study, "models": study["models"][:1]}, None):  # another pair's study, or none
        text = "\n".join(decision_rule_lines(summary, stale))
        assert "Not measured for these files yet" in text and "| full |" not in text
        assert "--checkpoints checkpoints/a.safetensors checkpoints/b.safetensors" in text


def test_a_run_still_going_after_the_deadline_is_stopped_and_recorded(tmp_path, monkeypatch):
    from training import study

    monkeypatch.setattr(study, "MIN_LAUNCH_SECONDS", 0)
    monkeypatch.setattr(study, "KILL_GRACE_SECONDS", 0)
    data = write_ferplus_npz(tmp_path / "data", {"train_0": 2, "val": 1})
    args = study.get_args_parser().parse_args(
        ["--config", str(QUICK), "--data", str(data), "--backbones", "resnet18", "--variants", "full", "--seeds", "0",
         "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    jobs = study.plan_jobs(args, {"name": "quick", "epochs": 2})
    codes = study.train_all(jobs, parallel=1, time_limit=0.5)  # python and torch take longer than that to start
    assert codes["resnet18/full/seed0"] != 0
    assert json.loads((jobs[0].run_dir / "study.json").read_text())["stopped_overdue"] is True
    assert "--time-limit 1" in (jobs[0].run_dir / "train.log").read_text()


def test_ship_also_measures_a_flip_tta_recipe_without_tta_as_the_app_and_default_evaluate_do(study):
    from fer_explain.checkpoint import load_checkpoint
    from fer_explain.data import load_split
    from fer_explain.evaluate import evaluation_record
    from training.records import load_records
    from training.ship import find_weights, verify

    import torch

    cpu, data = torch.device("cpu"), str(study / "test_only")
    record = select_pair(load_records(study / "runs"))["full"]  # the run whose float16 copy the study exported
    weights = find_weights(study / "out", record, "test")
    dataset = load_split(data, "test")
    ckpt = load_checkpoint(weights, cpu)
    flipped = evaluation_record(ckpt, dataset, cpu, 8, True, data, "test")
    plain = evaluation_record(ckpt, dataset, cpu, 8, False, data, "test")
    record.evals["test"] = flipped  # as if the recipe evaluated with flip TTA
    result = verify(weights, record, dataset, data, "test", cpu)
    assert result["predictions_changed"] == 0 and result["evaluation"]["flip_tta"] is True
    assert result["evaluation"]["single_view_accuracy"] == plain["accuracy"]
    assert result["evaluation"]["single_view_calibration"] == plain["calibration"]


def test_table4_leaves_out_the_flops_of_cuda_files_that_counted_the_lstm_twice(tmp_path):
    from training.tables import table4_cost
    from training.tables_markdown import table4_markdown

    def cost_file(name, device, variant, **extra):
        lstm = 0 if variant == "baseline" else 4.6e8
        c = {"model_config": {"backbone": "mobilenet_v2", "variant": variant}, "device": device, "precision": "x",
             "cpu_threads": 2, "params": {"total": 7e6}, "gflops": 1.5, "flops_lstm_analytic": lstm,
             "latency_ms": {"1": 6.0}, "images_per_s": {"1": 160.0}, "peak_memory_mb": None,
             "peak_memory_batch": None, "torch": "2", **extra}
        (tmp_path / name).write_text(json.dumps(c))
        return tmp_path / name

    files = [cost_file("a.json", "NVIDIA H200", "full"), cost_file("b.json", "NVIDIA H200", "baseline"),
             cost_file("c.json", "NVIDIA H200", "full", flops_lstm_counter=4.6e8), cost_file("d.json", "cpu", "full")]
    table = table4_cost(files)
    assert [r["gflops"] for r in table["rows"]] == [None, 1.5, 1.5, 1.5]
    text = table4_markdown(table)
    assert "| - (0.46) |" in text and "count the Bi-LSTM twice" in text
    assert "twice" not in table4_markdown(table4_cost(files[1:]))
    (tmp_path / "gpu_bench.json").write_text('{"model": "m", "rows": []}')  # a bench file in the cost folder
    with pytest.raises(UserError, match="gpu_bench.json: not a `fer_explain cost --json` file"):
        table4_cost([*files, tmp_path / "gpu_bench.json"])


def test_readme_cost_block_gives_each_model_once_with_trustworthy_flops_beside_the_claim(study, tmp_path):
    from training.results import cli

    cost = tmp_path / "cost"
    cost.mkdir()
    for name, device, variant, gflops, extra in (("cpu_r50_full.json", "cpu", "full", 8.79, {}),
                                                 ("gpu_r50_full.json", "NVIDIA H200", "full", 9.41, {}),
                                                 ("gpu_r50_base.json", "NVIDIA H200", "baseline", 8.18, {})):
        lstm = 0 if variant == "baseline" else 0.62e9
        parts = {"backbone": 23_508_032, "spatial_attention": 98, "sequence": 6_299_648 if lstm else 0}
        (cost / name).write_text(json.dumps({
            "model_config": {"backbone": "resnet50", "variant": variant}, "device": device, "precision": "x",
            "cpu_threads": 2, "params": {"total": sum(parts.values()), **parts}, "gflops": gflops,
            "flops_lstm_analytic": lstm, "latency_ms": {"1": 6.0}, "images_per_s": {"1": 160.0},
            "peak_memory_mb": None, "peak_memory_batch": None, "torch": "2", **extra}))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start -->\nold\n<!-- results:end -->\ntext\n")
    records = tmp_path / "runs"
    records.mkdir()
    with tarfile.open(study / "out/records.tar.gz") as tar:
        tar.extractall(records, filter="data")
    args = ["--records", str(records), "--cost", str(cost), "--out", str(tmp_path / "out"), "--readme", str(readme)]
    assert cli(args) == 2 and not (tmp_path / "out").exists()  # no cost block to rewrite: refused before writing
    readme.write_text("# x\n<!-- results:start -->\nold\n<!-- results:end -->\n<!-- cost:start -->\nold cost\n"
                      "<!-- cost:end -->\ntail\n")
    assert cli(args) == 0
    text = readme.read_text()
    block = text[text.index("<!-- cost:start -->"):text.index("<!-- cost:end -->")]
    assert "old cost" not in block and text.endswith("<!-- cost:end -->\ntail\n")
    rows = [line for line in block.splitlines() if line.startswith("| resnet50")]
    # the CUDA file of the full model counted the LSTM twice (no flops_lstm_counter): the CPU file's figure is used
    assert len(rows) == 2 and "9.41" not in block
    assert rows[0].startswith("| resnet50 baseline | 23,508,130 | backbone 23.51M / spatial attention 98 | 8.18 |")
    assert "| 8.79 = 8.17 counted + 0.62 Bi-LSTM (analytic) | [`cpu_r50_full.json`](results/cost/cpu_r50_full.json)" \
        in rows[1] and "Bi-LSTM 6.30M" in rows[1]
    assert "The paper claims 46.1M parameters and 15.3 GFLOPs. The network it describes (resnet50 Bi-LSTM) measures " \
           "29.8M and 8.8 G." in block
