"""The README's "As a library" snippet, run as it stands there (on the shipped checkpoint and an example photo), so
that the code a reader copies keeps working when the API changes."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fer_explain.checkpoint import read_metadata
from fer_explain.classes import CLASSES

REPO = Path(__file__).resolve().parents[1]


def library_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## As a library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readmes_library_snippet_runs_and_prints_what_it_says():
    done = subprocess.run([sys.executable, "-c", library_snippet()], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    faces = [line for line in lines if line.split(" ", 1)[0].isdigit()]
    assert len(faces) == 2 and all("FaceBox(" in line and line.split(") ", 1)[1].split()[0] in CLASSES
                                   for line in faces), lines  # two_faces.jpg: both found, each labelled
    assert any(line.startswith("for: ") and "against: " in line for line in lines), lines
    calibration = read_metadata(REPO / "checkpoints" / "fer-mobilenet_v2-bilstm.safetensors")["calibration"]
    assert str(calibration["temperature"]) in lines  # the shipped file's val temperature, which the Predictor applies
    assert any("deletion_auc" in line and "n_orders" in line for line in lines), lines
    assert lines[-1] in CLASSES, lines
