"""The shipped pair in checkpoints/ is the one its records describe: the files' sha256 are those of results/shipped.json
and checkpoints/README.md, they fit the 40 MB budget, and each loads as the model its name says. Guards against a
commit that updates the weights without the records (or the reverse)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_explain.evaluate import file_sha256

REPO = Path(__file__).resolve().parents[1]
SHIPPED = json.loads((REPO / "results" / "shipped.json").read_text())["files"]


@pytest.mark.parametrize("variant", ["full", "baseline"])
def test_shipped_files_match_their_records(variant):
    from fer_explain.pipeline import default_checkpoint

    entry = SHIPPED[variant]
    path = REPO / "checkpoints" / entry["file"]
    assert path == Path(default_checkpoint(baseline=variant == "baseline")).resolve()  # what the app loads
    assert path.stat().st_size == entry["bytes"]
    assert file_sha256(path) == entry["sha256"]
    assert entry["sha256"] in (REPO / "checkpoints" / "README.md").read_text()
    assert entry["evaluation"]["checkpoint_sha256"] == entry["sha256"]  # the test figures are this file's


def test_shipped_pair_fits_the_budget_and_loads_as_named():
    from fer_explain.checkpoint import load_checkpoint

    assert sum(e["bytes"] for e in SHIPPED.values()) <= 40_000_000
    for variant, entry in SHIPPED.items():
        assert load_checkpoint(REPO / "checkpoints" / entry["file"], "cpu").config.variant == variant


def test_readme_status_quotes_the_shipped_pairs_measured_figures():
    """The README's status paragraph is prose typed by hand: once another pair is shipped (training.ship rewrites
    results/shipped.json), this fails until the paragraph is rewritten, instead of letting it quote the old pair."""
    import re

    readme = (REPO / "README.md").read_text()
    status = " ".join(re.sub(r"^>", "", readme[readme.index("> **Status"):readme.index("## Training")],
                             flags=re.M).split())
    full, base = SHIPPED["full"], SHIPPED["baseline"]
    seed = {v: int(e["run"].rsplit("seed", 1)[1]) for v, e in SHIPPED.items()}
    val = {v: json.loads((REPO / "results" / "runs" / e["run"] / "eval_val.json").read_text())["accuracy"]
           for v, e in SHIPPED.items()}
    f, b = full["evaluation"], base["evaluation"]
    assert f["flip_tta"] and b["flip_tta"] and f["n"] == b["n"] == 3137
    for quote in (f"comes from `{full['run'].split('/')[0]}.yaml`",
                  f"Bi-LSTM seed {seed['full']} (val {100 * val['full']:.2f} %), baseline seed {seed['baseline']} "
                  f"(val {100 * val['baseline']:.2f} %)",
                  f"gets **{100 * f['single_view_accuracy']:.1f} %** as `python -m fer_explain evaluate` measures it",
                  f"and {100 * f['accuracy']:.1f} % with flip test-time augmentation",
                  f"its baseline {100 * b['single_view_accuracy']:.1f} % and {100 * b['accuracy']:.1f} %",
                  f"(mean class accuracy {100 * f['mean_class_accuracy']:.1f} % either way)"):
        assert quote in status, quote
