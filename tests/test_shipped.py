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


def test_the_shipped_files_are_calibrated_on_val_and_the_studies_measured_these_very_files():
    """training.ship records a val temperature in each file; the prior-correction and temperature studies the README
    and the card quote must be of the same bytes (their sha256), the first on the calibrated probabilities."""
    from fer_explain.checkpoint import read_metadata

    studies = {name: json.loads((REPO / "results" / f"{name}.json").read_text())
               for name in ("prior_correction", "temperature")}
    for entry in SHIPPED.values():
        calibration = read_metadata(REPO / "checkpoints" / entry["file"])["calibration"]
        assert calibration["split"] == "val" and entry["evaluation"]["temperature"] == calibration["temperature"]
        (prior,) = [m for m in studies["prior_correction"]["models"] if m["sha256"] == entry["sha256"]]
        (fit,) = [m for m in studies["temperature"]["models"] if m["sha256"] == entry["sha256"]]
        assert prior["temperature"] == fit["recorded_temperature"] == calibration["temperature"]
        assert fit["temperature"] == pytest.approx(calibration["temperature"], abs=1e-3)  # the same fit, refitted
