"""A write the file system refuses only after the work is done (a full disk or a read-only mount passes the writable
check made at the start): the command ends with one line and a non-zero exit, not a stack trace, and `predict`'s
table still reaches stdout instead of being lost. In-process, so that the refusal can be made to happen on demand."""
from __future__ import annotations

import csv
import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from fer_explain.cli import main
from fer_explain.errors import run_command


def refuse(path: pathlib.Path):
    def command():
        raise PermissionError(13, "Permission denied", str(path))
    return command


def test_run_command_turns_a_refused_file_into_one_line(capsys, tmp_path):
    assert run_command(refuse(tmp_path / "m.json")) == 1
    assert capsys.readouterr().err == f"error: Permission denied: {tmp_path / 'm.json'}\n"


@pytest.fixture
def tiny_checkpoint(tmp_path) -> pathlib.Path:
    import torch

    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", lstm_hidden=16, head_hidden=16)).eval()
    return save_checkpoint(tmp_path / "tiny.safetensors", model, Preprocessing())


def test_predict_prints_its_table_when_the_out_file_is_refused(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    image = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(image)
    out = tmp_path / "result.csv"
    real_write_text = pathlib.Path.write_text

    def write_text(self, *args, **kwargs):
        if self == out:
            raise OSError(28, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    code = main(["predict", str(image), "--checkpoint", str(tiny_checkpoint), "--whole-image", "--out", str(out),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    assert not out.exists()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [pathlib.Path(r["file"]).name for r in rows] == ["gray.png"] and rows[0]["label"]
    assert f"error: --out: could not write {out} (No space left on device); the table went to stdout instead" \
        in captured.err.splitlines()
