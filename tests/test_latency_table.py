"""The latency tables (training.latency) from real files: `fer_explain bench --json`, `benchmarks/app_latency.py
--json` and `benchmarks/evaluate_speed.py --json`, all run here as subprocesses on a random-init resnet18; and the
benchmark scripts' refusals of bad arguments."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fer_explain.classes import CLASSES
from fer_explain.errors import UserError
from test_browser import CHROMIUM
from test_training import run_module, write_ferplus_npz
from training.latency import latency_markdown, latency_tables

REPO = Path(__file__).resolve().parents[1]


def app_latency(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/app_latency.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def evaluate_speed(*args: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = None if tmpdir is None else {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.run([sys.executable, "benchmarks/evaluate_speed.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    done = run_module("fer_explain", "bench", "--backbone", "resnet18", "--device", "cpu", "--runs", "2", "--warmup",
                      "0", "--batch", "2", "--json", str(folder / "cpu_resnet18.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    done = app_latency("--backbone", "resnet18", "--runs", "1", "--json", str(folder / "app_resnet18.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_tables_hold_what_the_files_measured(bench_folder):
    bench = json.loads((bench_folder / "cpu_resnet18.json").read_text())
    app = json.loads((bench_folder / "app_resnet18.json").read_text())
    t = latency_tables(sorted(bench_folder.glob("*.json")))
    (row,), (app_row,) = t["bench"], t["app"]
    predict = next(r for r in bench["rows"] if r["name"] == "predict" and r["batch"] == 1)
    together = next(r for r in bench["rows"] if r["name"] == "explain: spatial_attention + token_saliency + gradcam")
    assert row["predict"] == {k: predict[k] for k in ("median_ms", "p90_ms", "n")} and row["device"] == "cpu"
    assert row["batch"]["batch"] == 2 and row["three"]["median_ms"] == together["median_ms"]
    assert row["faithful"]["n"] == 5  # bench times faithfulness at least 5 times, whatever --runs says
    assert len(app["analyze_s"]) == 2 and app["analyze_median_s"] == app["analyze_s"][1]  # the first is the warm-up
    assert app_row["analyze_runs"] == 1 and app["random_init"] and app["startup_s"] > 0
    assert not Path(app["checkpoint"]).parent.exists()  # the random-init pair's temporary folder is removed

    markdown = latency_markdown(t, "results/bench/")
    resnet_line = next(line for line in markdown.splitlines() if line.startswith("| resnet18 Bi-LSTM (random init)"))
    assert f"| {predict['median_ms']:.1f} ({predict['p90_ms']:.1f}) |" in resnet_line
    assert "(results/bench/cpu_resnet18.json)" in resnet_line
    assert f"| {app['analyze_median_s']:.2f} (of 1) |" in markdown
    assert len(app["decide_s"]) == len(app["decide_labels"]) == 4 * len(app["decide_taus"])  # 1 warm-up + 3 rounds
    assert app["decide_median_s"] == statistics.median(app["decide_s"][len(app["decide_taus"]):])
    assert f"| {app['select_class_median_s']:.2f} | {app['decide_median_s']:.2f} |" in markdown
    assert set(app["decide_labels"]) <= set(CLASSES)
    for block in markdown.split("\n\n"):  # every row as wide as its table's header
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) <= 1, block


def test_an_app_file_from_before_the_slider_endpoint_gets_a_dash(tmp_path):
    old = {"checkpoint": "a.safetensors", "baseline": "b.safetensors", "device": "cpu", "cpu_count": 2,
           "startup_s": 9.0, "analyze_s": [2.0, 1.25], "analyze_median_s": 1.25, "select_class_median_s": 1.1}
    (tmp_path / "app_old.json").write_text(json.dumps(old))
    markdown = latency_markdown(latency_tables([tmp_path / "app_old.json"]), "results/bench/")
    assert "| 9.0 | 1.25 (of 1) | 1.10 | - | - | - | [`app_old.json`]" in markdown


@pytest.mark.browser
def test_app_latency_times_a_visitors_wait_in_chromium(tmp_path):
    """`--browser`: first visits until the page is ready, and the photo set on the page's file input until the panels
    are drawn, then until the page's last event is done, in headless Chromium; the table shows the medians."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")
    done = app_latency("--backbone", "resnet18", "--runs", "2", "--browser", "--json", str(tmp_path / "app.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    app = json.loads((tmp_path / "app.json").read_text())
    drawn, settled = app["browser_drawn_s"], app["browser_settled_s"]
    assert len(app["browser_load_s"]) == len(drawn) == len(settled) == 3  # 1 warm-up + 2 runs
    assert app["browser"].startswith("chromium ") and app["browser_load_median_s"] > 0
    assert all(0 < d <= s for d, s in zip(drawn, settled))  # settled is never before drawn
    assert app["browser_drawn_median_s"] == statistics.median(drawn[1:])
    markdown = latency_markdown(latency_tables([tmp_path / "app.json"]), "results/bench/")
    assert (f"| {app['browser_load_median_s']:.2f} | {app['browser_drawn_median_s']:.2f} "
            f"({app['browser_settled_median_s']:.2f}) | [`app.json`]") in markdown


def test_a_file_of_neither_kind_is_refused(tmp_path):
    (tmp_path / "other.json").write_text('{"accuracy": 0.5}')
    with pytest.raises(UserError, match="not a file of `fer_explain bench --json`"):
        latency_tables([tmp_path / "other.json"])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="not a readable JSON file"):
        latency_tables([tmp_path / "broken.json"])
    (tmp_path / "old.json").write_text('{"rows": [{"name": "predict", "batch": 1}], "model": "m"}')
    with pytest.raises(UserError, match="lacks the field"):
        latency_tables([tmp_path / "old.json"])


@pytest.mark.parametrize("args, message", [
    (("--runs", "0"), "--runs must be at least 1"),
    (("--checkpoint", "a.safetensors"), "give --checkpoint and --baseline together"),
    (("--json", "."), "--json is a file to write"),
    (("--backbone", "nosuch"), "unknown backbone 'nosuch'"),
])
def test_app_latency_refuses_bad_arguments_before_starting(args, message):
    done = app_latency(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_evaluate_speed_times_a_split_and_its_table_row_holds_the_file(tmp_path):
    data = write_ferplus_npz(tmp_path / "ferplus", {"train_0": 1, "val": 1, "test": 3})  # 12 test images
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = evaluate_speed("--data", str(data), "--backbone", "resnet18", "--runs", "2", "--batch-size", "5",
                          "--json", str(tmp_path / "bench/evaluate_resnet18.json"), tmpdir=scratch)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bench/evaluate_resnet18.json").read_text())
    assert result["n"] == 12 and result["split"] == "test" and result["batch_size"] == 5 and result["random_init"]
    assert len(result["evaluate_s"]) == 2 and min(result["evaluate_s"]) <= result["median_s"] <= max(
        result["evaluate_s"])
    assert result["images_per_s"] == pytest.approx(12 / result["median_s"])
    assert "predictions" not in result and "accuracy" not in result  # a random model's metrics say nothing
    assert not list(scratch.glob("fer_evaluate_bench_*"))  # the random-init checkpoint is removed

    t = latency_tables([tmp_path / "bench/evaluate_resnet18.json"])
    assert t["bench"] == [] and t["app"] == [] and t["evaluate"][0]["median_s"] == result["median_s"]
    line = next(row for row in latency_markdown(t, "results/bench/").splitlines()
                if row.startswith("| resnet18 Bi-LSTM (random init) | cpu ("))
    assert f"| test | 12 | 5 | {result['median_s']:.1f} (of 2) | {result['images_per_s']:.1f} |" in line


@pytest.mark.parametrize("args, message", [
    (("--runs", "0"), "--runs must be at least 1"),
    (("--batch-size", "0"), "--batch-size must be at least 1"),
    (("--json", "."), "--json is a file to write"),
    (("--split", "nosuch"), "nosuch"),
    (("--backbone", "nosuch"), "unknown backbone 'nosuch'"),
])
def test_evaluate_speed_refuses_bad_arguments(tmp_path, args, message):
    data = write_ferplus_npz(tmp_path / "ferplus", {"train_0": 1, "val": 1, "test": 1})
    done = evaluate_speed("--data", str(data), "--backbone", "resnet18", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
