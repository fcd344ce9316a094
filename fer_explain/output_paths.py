"""Checks on where a command will write, run before its work: a `--json` that is a folder or an `--out` that is a
file must fail in a second with one clear line, not as a stack trace after minutes of evaluation."""
from __future__ import annotations

import os
from pathlib import Path

from fer_explain.errors import UserError


def check_output_file(path: Path | str | None, flag: str) -> None:
    """A file the command will write (its missing folders are created then)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} is a file to write; {path} is a folder")
    _check_creatable(path.parent, flag)


def check_output_folder(path: Path | str | None, flag: str) -> None:
    """A folder the command will create if needed and write into."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} is a folder to write into; {path} is a file")
    _check_creatable(path, flag)


def _check_creatable(folder: Path, flag: str) -> None:
    existing = folder.absolute()
    while not existing.exists():  # the nearest existing ancestor is where mkdir(parents=True) starts
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag}: cannot create {folder}, because {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: {existing} is not writable")
