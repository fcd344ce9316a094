"""The latency tables (training.latency) from real files: `fer_explain bench --json` and `benchmarks/app_latency.py
--json`, both run here as subprocesses on a random-init resnet18; and app_latency's refusals of bad arguments."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fer_explain.errors import UserError
from test_training import run_module
from training.latency import latency_markdown, latency_tables

REPO = Path(__file__).resolve().parents[1]


def app_latency(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/app_latency.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


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
    for block in markdown.split("\n\n"):  # every row as wide as its table's header
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) <= 1, block


def test_a_file_of_neither_kind_is_refused(tmp_path):
    (tmp_path / "other.json").write_text('{"accuracy": 0.5}')
    with pytest.raises(UserError, match="neither a `fer_explain bench --json`"):
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
])
def test_app_latency_refuses_bad_arguments_before_starting(args, message):
    done = app_latency(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
