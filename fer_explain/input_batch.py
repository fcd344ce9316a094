"""A batch of input files for the `predict` and `explain` commands: finding them under the paths given, and listing
the ones skipped. A batch never stops at a bad file: it is skipped, named with the reason at the end, and the exit
code is non-zero only when nothing could be processed."""
from __future__ import annotations

import sys
from pathlib import Path

from fer_explain.errors import UserError


def find_input_files(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image and video files under `paths` (folders searched recursively), and the paths that do not exist (to
    be listed as skipped). No file at all is a UserError."""
    from fer_explain.image_io import iter_image_files
    missing: list[tuple[str, str]] = []
    files = list(iter_image_files(paths, on_missing=lambda p: missing.append((str(p), "no such file or folder"))))
    if not files and not missing:
        raise UserError(f"no images or videos found in {' '.join(map(str, paths))}")
    return files, missing


def skip_reason(error: Exception) -> str:
    """One line on why a file was skipped: a UserError's own message, else the exception's type and first line."""
    if isinstance(error, UserError):
        return str(error)
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}:", file=sys.stderr)
        for name, why in skipped:
            if why.startswith(f"{name}:"):  # image_io's messages already start with the file name
                why = why[len(name) + 1:].strip()
            print(f"  {name}: {why}", file=sys.stderr)


def nothing_processed(skipped: list[tuple[str, str]]) -> int:
    """The skipped files, the error line and exit code 1 of a batch where no input could be read."""
    report_skipped(skipped)
    print("error: none of the inputs could be processed", file=sys.stderr)
    return 1
