"""`evaluate` and `cost` end to end as subprocesses on a tiny resnet18 checkpoint and a tiny ferplus-npz folder the
test writes itself; `predict_probabilities` in-process (batching, flip TTA); bad inputs give one `error:` line."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_explain.checkpoint import save_checkpoint
from fer_explain.classes import CLASSES
from fer_explain.config import ModelConfig, Preprocessing
from fer_explain.cost import lstm_flops
from fer_explain.data.dataset import FaceDataset
from fer_explain.evaluate import predict_probabilities
from fer_explain.model import build_model

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 6
LABELS = np.array([0, 1, 1, 2, 3, 6], dtype=np.uint8)  # no fear, disgust or contempt


def tiny_model(seed=0, **config):
    torch.manual_seed(seed)
    return build_model(ModelConfig(backbone="resnet18", lstm_hidden=16, head_hidden=16, **config)).eval()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "fer_explain", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcost")
    ckpt = save_checkpoint(root / "tiny.safetensors", tiny_model(), Preprocessing(), {"note": "test"})
    data = root / "ferplus"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "test.npz", images=rng.integers(0, 256, (N_IMAGES, 48, 48), dtype=np.uint8), labels=LABELS)
    return root, ckpt, data


def test_evaluate_writes_metrics_json_and_confusion_png(files):
    root, ckpt, data = files
    out = root / "eval_out"
    result = cli("evaluate", "--checkpoint", ckpt, "--data", data, "--split", "test", "--json", root / "m.json",
                 "--out", out, "--batch-size", 4, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "img/s]" not in result.stderr  # stderr is not a terminal here: no progress bar in the caller's log
    assert "note:" in result.stdout and "contempt" in result.stdout  # absent classes are announced

    record = json.loads((root / "m.json").read_text())
    assert json.loads((out / "metrics.json").read_text()) == record
    assert record["n"] == N_IMAGES and record["split"] == "test"
    assert record["classes"] == list(CLASSES)
    assert record["evaluated_classes"] == ["neutral", "happy", "sad", "surprise", "anger"]
    assert record["missing_classes"] == ["fear", "disgust", "contempt"]
    for key in ("accuracy", "mean_class_accuracy", "macro_f1", "weighted_f1"):
        assert 0 <= record[key] <= 1, key
    cm = np.array(record["confusion_matrix"])
    assert cm.shape == (8, 8) and cm.sum() == N_IMAGES
    assert cm.sum(1).tolist() == np.bincount(LABELS, minlength=8).tolist()  # rows = true class
    assert record["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert len(record["data_fingerprint"]) == 16
    assert record["skipped"] == [] and record["n_skipped"] == 0
    assert record["seconds"] > 0 and record["images_per_s"] > 0
    png = out / "confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # calibration of the probabilities it decided with: their argmax is the prediction, so the accuracies agree
    calibration = record["calibration"]
    assert calibration["accuracy"] == pytest.approx(record["accuracy"]) and 0 <= calibration["ece"] <= 1
    assert sum(b["count"] for b in calibration["bins"]) == N_IMAGES
    assert f"calibration: ECE {100 * calibration['ece']:.2f}%" in result.stdout
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["flip_tta"] is False and record["single_view_accuracy"] is None
    # with flip TTA the record also holds the unflipped view's accuracy: the run above, without a second pass
    flipped = cli("evaluate", "--checkpoint", ckpt, "--data", data, "--split", "test", "--json", root / "f.json",
                  "--batch-size", 4, "--device", "cpu", "--flip-tta")
    assert flipped.returncode == 0, flipped.stderr
    flip_record = json.loads((root / "f.json").read_text())
    assert flip_record["flip_tta"] is True and flip_record["single_view_accuracy"] == record["accuracy"]
    assert flip_record["single_view_calibration"] == record["calibration"] and record["single_view_calibration"] is None
    assert f"without the flipped view (as the app predicts): accuracy {100 * record['accuracy']:.2f}%" in flipped.stdout


def _dataset(images):
    return FaceDataset(torch.from_numpy(images[:, None]), torch.from_numpy(LABELS.astype(np.int64)), "test", "toy")


def test_predict_probabilities_batching_and_flip_tta():
    model = tiny_model(seed=1)
    images = np.random.default_rng(1).integers(0, 256, (N_IMAGES, 48, 48), dtype=np.uint8)
    pre = Preprocessing()
    probs = predict_probabilities(model, _dataset(images), pre, "cpu", batch_size=4, progress=False)
    assert probs.shape == (N_IMAGES, len(CLASSES)) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # the batch size must not change any image's result
    again = predict_probabilities(model, _dataset(images), pre, "cpu", batch_size=5, progress=False)
    assert np.allclose(probs, again, atol=1e-5)
    # flip TTA makes the prediction mirror-invariant: the flipped data gives the same probabilities
    tta = predict_probabilities(model, _dataset(images), pre, "cpu", batch_size=4, flip_tta=True, progress=False)
    tta_mirrored = predict_probabilities(model, _dataset(images[:, :, ::-1].copy()), pre, "cpu", batch_size=4,
                                         flip_tta=True, progress=False)
    assert np.allclose(tta, tta_mirrored, atol=1e-5)
    assert not np.allclose(tta, probs, atol=1e-6)  # and it did average something
    views = predict_probabilities(model, _dataset(images), pre, "cpu", batch_size=4, flip_tta=True, progress=False,
                                  keep_views=True)
    assert views.shape == (2, N_IMAGES, len(CLASSES)) and np.array_equal(views.mean(0), tta)
    assert np.allclose(views[0], probs, atol=1e-6)  # the first view is the unflipped image


def test_cost_of_a_checkpoint(files):
    root, ckpt, _ = files
    result = cli("cost", "--checkpoint", ckpt, "--device", "cpu", "--json", root / "cost.json", "--runs", 1,
                 "--batch-sizes", 1, 2)
    assert result.returncode == 0, result.stderr
    cost = json.loads((root / "cost.json").read_text())
    model = tiny_model()
    assert cost["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert cost["params"]["sequence"] == sum(p.numel() for p in model.sequence.parameters()) > 0
    stages = ("backbone", "channel_attention", "spatial_attention", "sequence", "head")
    assert sum(cost["params"][s] for s in stages) == cost["params"]["total"]
    assert cost["flops_lstm_analytic"] == lstm_flops(512, 16, 2, 49, bidirectional=True)
    assert cost["flops"] == cost["flops_counter"] + cost["flops_lstm_analytic"]
    assert 3e9 < cost["flops_counter"] < 4.5e9  # resnet18 ~3.6 GFLOPs at 224 (2 x 1.8 GMACs)
    assert cost["macs"] == cost["flops"] // 2 and cost["gflops"] == pytest.approx(cost["flops"] / 1e9)
    assert set(cost["latency_ms"]) == set(cost["images_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in cost["latency_ms"].values())
    assert cost["peak_memory_mb"] is None and cost["device"] == "cpu"
    assert cost["torch"] == torch.__version__ and cost["cpu_threads"] >= 1
    assert "parameters" in result.stdout and "LSTM" in result.stdout


def test_cost_of_the_baseline_has_no_lstm(tmp_path):
    result = cli("cost", "--backbone", "resnet18", "--variant", "baseline", "--device", "cpu", "--runs", 1,
                 "--batch-sizes", 1, "--json", tmp_path / "c.json")
    assert result.returncode == 0, result.stderr
    cost = json.loads((tmp_path / "c.json").read_text())
    assert cost["flops_lstm_analytic"] == 0 and cost["params"]["sequence"] == 0
    assert cost["flops"] == cost["flops_counter"]


@pytest.fixture(scope="module")
def bad_checkpoints(files):
    root, good, _ = files
    truncated = root / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:5000])
    mismatched_model = tiny_model()
    mismatched_model.config = ModelConfig(backbone="resnet18", variant="baseline", lstm_hidden=16, head_hidden=16)
    mismatched = save_checkpoint(root / "mismatched.safetensors", mismatched_model, Preprocessing())
    reordered = save_checkpoint(root / "reordered.safetensors",
                                tiny_model(classes=tuple(reversed(CLASSES))), Preprocessing())
    return {"truncated": truncated, "mismatched": mismatched, "reordered": reordered}


def test_missing_data_folder_gives_one_error_line(files):
    root, ckpt, _ = files
    result = cli("evaluate", "--checkpoint", ckpt, "--data", root / "no_such_dir", "--device", "cpu")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr


BAD_OUTPUTS = {  # where the results would go; each must fail before the work, with the flag named
    "json is a folder": (["evaluate", "--json", "{dir}"], "--json is a file to write"),
    "out is a file": (["evaluate", "--out", "{file}"], "--out is a folder to write into"),
    "out under a file": (["evaluate", "--out", "{file}/sub"], "because"),
    "cost json is a folder": (["cost", "--json", "{dir}"], "--json is a file to write"),
}


@pytest.mark.parametrize("case", ["truncated", "mismatched", "reordered", "unknown backbone", "zero batch",
                                  *BAD_OUTPUTS])
def test_bad_inputs_give_one_error_line(files, bad_checkpoints, case, capsys, tmp_path):
    """Same path as the subprocess (cli.main turns UserError into one line); in-process to save start-up time.
    Any other exception would propagate here and fail the test."""
    from fer_explain.cli import main

    _, ckpt, data = files
    expected = "error:"
    if case == "unknown backbone":
        argv = ["cost", "--backbone", "resnet9000", "--device", "cpu"]
    elif case == "zero batch":
        argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--device", "cpu", "--batch-size", "0"]
    elif case in BAD_OUTPUTS:
        (tmp_path / "file").write_text("x")
        (command, *flags), expected = BAD_OUTPUTS[case]
        flags = [f.format(dir=tmp_path, file=tmp_path / "file") for f in flags]
        argv = [command, "--checkpoint", str(ckpt), *(["--data", str(data)] if command == "evaluate" else []),
                "--device", "cpu", *flags]
    else:
        argv = ["evaluate", "--checkpoint", str(bad_checkpoints[case]), "--data", str(data), "--device", "cpu"]
    assert main(argv) != 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert captured.out == ""  # nothing was evaluated or measured first


def test_an_lstm_the_counter_does_see_is_not_counted_twice():
    # On CUDA torch's counter sees the LSTM's matrix products (on CPU it sees none): stand in with an LSTM whose
    # forward runs one counted matmul, and check that the analytic figure replaces it instead of adding to it
    from fer_explain.cost import count_flops

    class CountedLSTM(torch.nn.LSTM):
        def forward(self, x, hx=None):
            out = super().forward(x, hx)
            torch.ones(8, 8) @ torch.ones(8, 8)  # 2 * 8 * 8 * 8 = 1024 counted FLOPs
            return out

    class Net(torch.nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.proj, self.seq = torch.nn.Linear(3, 4), torch.nn.Sequential(lstm)

        def forward(self, x):  # x: (1, 3, S, S) -> S tokens of 3 features
            return self.seq(self.proj(x.mean(2).transpose(1, 2)))[0]

    plain = count_flops(Net(torch.nn.LSTM(4, 2, batch_first=True, bidirectional=True)), torch.device("cpu"), 5)
    counted = count_flops(Net(CountedLSTM(4, 2, batch_first=True, bidirectional=True)), torch.device("cpu"), 5)
    assert plain["flops_lstm_counter"] == 0 and counted["flops_lstm_counter"] == 1024
    assert counted["flops_counter"] == plain["flops_counter"] + 1024
    assert counted["flops"] == plain["flops"] == plain["flops_counter"] + lstm_flops(4, 2, 1, 5, bidirectional=True)
