"""Fixtures of the CLI tests: a tiny random checkpoint and a folder of inputs, made once per test module."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import make_inputs, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("inputs"))
