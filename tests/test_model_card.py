"""The app's model card: the paper's claims beside our measurements, read from results/ (shipped.json, cost/*.json),
and test figures shown only for a checkpoint that is byte for byte the shipped file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app_helpers import make_checkpoints
from fer_explain import model_card
from fer_explain.app_views import LoadedModels
from fer_explain.evaluate import file_sha256
from fer_explain.predictor import Predictor


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    checkpoint, baseline = make_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    return LoadedModels(Predictor(str(checkpoint), device="cpu"), Predictor(str(baseline), device="cpu"), [], "cpu")


def evaluation(accuracy: float, contempt_recall: float) -> dict:
    return {"accuracy": accuracy, "mean_class_accuracy": 0.61, "macro_f1": 0.55, "weighted_f1": 0.7, "n": 3137,
            "per_class": {"contempt": {"precision": 0.1, "recall": contempt_recall, "f1": 0.15, "support": 15}}}


def write_results(folder, models, sha_of_full: str | None = None) -> None:
    """results/ as training.ship and `fer_explain cost --json` write them (only the keys the card reads)."""
    files = {"full": {"sha256": sha_of_full or file_sha256(models.main.checkpoint_path),
                      "evaluation": {**evaluation(0.8123, 0.2), "flip_tta": True}},
             "baseline": {"sha256": file_sha256(models.baseline.checkpoint_path),
                          "evaluation": evaluation(0.8345, 0.4)}}
    (folder / "shipped.json").write_text(json.dumps({"files": files}))
    (folder / "cost").mkdir()
    for backbone, total in (("mobilenet_v2", 7_420_000), ("resnet50", 30_598_826)):
        cost = {"params": {"total": total}, "gflops": 8.7934, "flops_lstm_analytic": 616_562_688, "device": "cpu",
                "model_config": {"backbone": backbone, "variant": "full", "channel_attention": "channel",
                                 "spatial_attention": "spatial"}}
        (folder / "cost" / f"cpu_{backbone}_full.json").write_text(json.dumps(cost))
    # sorts first, but a CUDA file from before the LSTM fix: its FLOPs hold the Bi-LSTM twice, so it is passed over
    twice = {**cost, "gflops": 9.41, "device": "NVIDIA H200"}
    (folder / "cost" / "a_gpu_resnet50_full.json").write_text(json.dumps(twice))


def claims_rows(markdown: str) -> dict[str, str]:
    """{claim: 'paper | ours'} from the claims table."""
    section = markdown.split("### The paper's claims beside our measurements")[1].split("###")[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {row[0].strip(): " | ".join(cell.strip() for cell in row[1:]) for row in rows[1:]}


def test_claims_stand_beside_the_shipped_files_measurements(models, tmp_path):
    write_results(tmp_path, models)
    card = model_card.model_card_markdown(models, checkpoint_dir=tmp_path, results_dir=tmp_path)
    rows = claims_rows(card)
    assert rows["Accuracy"].startswith("94.20 % (RAF-DB test) | 81.23% (FER+ test, 3,137 faces, with flip "
                                       "test-time augmentation; the loaded Bi-LSTM model")
    assert rows["Contempt accuracy"] == "76 % | 20.0% (3 of 15 FER+ test faces)"
    # the paper's architecture (resnet50), not whichever cost file sorts first, beside the loaded model's own count
    assert rows["Parameters"].startswith("46.1 M | 30.6 M (resnet50 + Bi-LSTM, `results/cost/cpu_resnet50_full.json`)")
    assert rows["Parameters"].endswith(f"the loaded resnet18 model: {models.main.num_parameters / 1e6:.1f} M")
    assert rows["FLOPs"].startswith("15.3 G | 8.79 G at 224x224, of which the Bi-LSTM 0.62 G")
    # each model's section carries its own file's test figures
    bilstm, baseline = card.split("### Bi-LSTM model")[1].split("### Baseline")
    assert "| test accuracy | 81.23% |" in bilstm and "| test accuracy | 83.45% |" in baseline.split("###")[0]
    assert "flip test-time augmentation, as the recipe" in bilstm and "flip" not in baseline.split("###")[0]


def test_the_contempt_claim_also_shows_the_class_balanced_decision_of_the_same_file(models, tmp_path):
    write_results(tmp_path, models)
    sha = file_sha256(models.main.checkpoint_path)
    shipped = json.loads((tmp_path / "shipped.json").read_text())
    shipped["files"]["full"]["evaluation"]["checkpoint_sha256"] = sha
    (tmp_path / "shipped.json").write_text(json.dumps(shipped))
    entry = {"sha256": sha, "tau": 0.7, "test": {"balanced": {"recall": {"contempt": 0.4}}}}
    other = {**entry, "sha256": "0" * 64, "tau": 0.3}
    (tmp_path / "prior_correction.json").write_text(json.dumps({"flip_tta": False, "models": [other, entry]}))
    rows = claims_rows(model_card.model_card_markdown(models, checkpoint_dir=tmp_path, results_dir=tmp_path))
    assert rows["Contempt accuracy"] == ("76 % | 20.0% (3 of 15 FER+ test faces); 40.0% with a class-balanced "
                                         "decision (one view, τ = 0.7 chosen on val; `results/prior_correction.md`)")
    (tmp_path / "prior_correction.json").write_text(json.dumps({"flip_tta": False, "models": [other]}))
    rows = claims_rows(model_card.model_card_markdown(models, checkpoint_dir=tmp_path, results_dir=tmp_path))
    assert rows["Contempt accuracy"] == "76 % | 20.0% (3 of 15 FER+ test faces)"  # another file's figures: not shown
    for damaged in ("{not json", json.dumps({"models": [{"sha256": sha}]}), json.dumps({"models": {}})):
        (tmp_path / "prior_correction.json").write_text(damaged)
        rows = claims_rows(model_card.model_card_markdown(models, tmp_path, tmp_path))
        assert rows["Contempt accuracy"] == "76 % | 20.0% (3 of 15 FER+ test faces)"


def test_no_test_figures_for_a_file_that_is_not_the_shipped_one(models, tmp_path):
    write_results(tmp_path, models, sha_of_full="0" * 64)
    card = model_card.model_card_markdown(models, checkpoint_dir=tmp_path, results_dir=tmp_path)
    rows = claims_rows(card)
    assert "no test figures on record for the loaded checkpoint" in rows["Accuracy"]
    assert "81.23" not in card.split("### Baseline")[0]
    assert rows["Parameters"].startswith("46.1 M | 30.6 M")  # the architecture's cost does not depend on the file


def test_nothing_published_yet(models, tmp_path):
    rows = claims_rows(model_card.model_card_markdown(models, checkpoint_dir=tmp_path, results_dir=tmp_path))
    assert rows["FLOPs"] == f"15.3 G | {model_card.NOT_MEASURED}"
    assert rows["Parameters"] == f"46.1 M | the loaded resnet18 model: {models.main.num_parameters / 1e6:.1f} M"
    assert "no test figures on record" in rows["Accuracy"]
    empty = LoadedModels(None, None, [], "cpu")
    assert set(claims_rows(model_card.model_card_markdown(empty, tmp_path, tmp_path)).values()) == {
        f"{claim} | {model_card.NOT_MEASURED}" for _, _, claim in model_card.PAPER_CLAIMS}


def test_the_shipped_pairs_group_leads_the_dataset_view(tmp_path):
    table = ("# Table II: per class\n\nIntro.\n\n## a recipe, resnet50\n\nSeeds: 0.\n\n| a |\n\n"
             "## soft recipe, mobilenet_v2\n\nSeeds: 0, 1.\n\n| soft |\n\nNo paired t-test for x: one seed.")
    (tmp_path / "table2_per_class.md").write_text(table)
    assert model_card.shipped_group_first(table, tmp_path) == table  # no selection.json: as written
    (tmp_path / "selection.json").write_text(json.dumps({"recipe": "soft", "backbone": "mobilenet_v2"}))
    text = model_card.results_markdown(tmp_path, stems=model_card.COMPARE_TABLES)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == ["#### Table II: per class", "##### soft recipe, mobilenet_v2 (the shipped pair)",
                        "##### a recipe, resnet50"]
    assert text.index("| soft |") < text.index("No paired t-test") < text.index("| a |")  # sections kept whole
    (tmp_path / "selection.json").write_text(json.dumps({"recipe": "other", "backbone": "mobilenet_v2"}))
    assert model_card.shipped_group_first(table, tmp_path) == table


def test_file_paths_are_shown_relative_to_the_working_directory(models, tmp_path, monkeypatch):
    checkpoint = models.main.checkpoint_path
    monkeypatch.chdir(Path(checkpoint).parent.parent)
    section = model_card.checkpoint_section("Bi-LSTM model", models.main)
    assert f"File: `{Path(checkpoint).parent.name}/{Path(checkpoint).name}`" in section
    monkeypatch.chdir(tmp_path)  # a file outside the working directory keeps the path it was given
    assert f"File: `{checkpoint}`" in model_card.checkpoint_section("Bi-LSTM model", models.main)


def test_the_data_row_names_the_layout_and_size_not_the_training_machines_folder(models, monkeypatch):
    data = {"format": "ferplus-npz", "root": "/work/main/data/ferplus", "train": {"n": 25045}}
    monkeypatch.setattr(models.main, "metadata", {**models.main.metadata, "data": data})
    section = model_card.checkpoint_section("Bi-LSTM model", models.main)
    assert "| data | ferplus-npz, 25,045 training images |" in section and "/work/main" not in section


def test_the_card_says_whether_the_probabilities_are_calibrated_and_on_what(models, monkeypatch):
    assert "| probabilities | as trained (no calibration temperature recorded) |" in \
        model_card.checkpoint_section("Bi-LSTM model", models.main)
    calibration = {"temperature": 0.627, "split": "val", "images": 3579}
    monkeypatch.setattr(models.main, "metadata", {**models.main.metadata, "calibration": calibration})
    monkeypatch.setattr(models.main, "temperature", 0.627)
    assert "| probabilities | calibrated: logits divided by T = 0.627, fitted on val (3579 images) |" in \
        model_card.checkpoint_section("Bi-LSTM model", models.main)
