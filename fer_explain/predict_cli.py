"""`python -m fer_explain predict PATH...`: the emotion of every face in images, folders (recursive) and videos.

One row per face: file, frame, time_s (videos only), face, box ("x0 y0 x1 y1"), label, score (top probability),
one probability per class, note. An image without a face gives one row with an empty box/label and a note. Videos are
sampled every N-th frame; with --out, each video also gets an emotion-timeline PNG beside the output. Bad files are
skipped and listed at the end on stderr; the exit code is non-zero only when nothing could be processed. With
--prior-correction TAU the decision favours the classes rare in training (fer_explain.decision), and the
probabilities are the adjusted ones (each row's note says so). Probabilities are divided by the checkpoint's
calibration temperature when it records one (fer_explain.temperature; `python -m fer_explain calibrate`).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from fer_explain.decision import add_prior_correction_argument, check_prior_correction
from fer_explain.errors import UserError
from fer_explain.input_batch import find_input_files, nothing_processed, report_skipped, skip_reason

FORMATS = ("csv", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image or video files and folders (searched recursively)")
    parser.add_argument("--checkpoint", help="model .safetensors, run dir or hf://owner/repo/file "
                                             "(default: the Bi-LSTM checkpoint in checkpoints/)")
    parser.add_argument("--format", choices=FORMATS, help="output format (default: from --out's suffix, else csv)")
    parser.add_argument("--out", help="output file (default: stdout)")
    parser.add_argument("--whole-image", action="store_true", help="when no face is found, classify the whole image")
    parser.add_argument("--max-faces", type=int, default=20, help="faces kept per image (the largest)")
    parser.add_argument("--every-n", type=int, default=10, help="for videos: analyse every N-th frame")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="prediction precision: auto = bf16 autocast on CUDA, float32 on CPU")
    parser.add_argument("--batch-size", type=int, default=32, help="faces per forward pass")
    add_prior_correction_argument(parser)


def _rows_for(key, result, classes) -> list[dict]:
    """The output rows of one image or video frame (the values of `pipeline.face_record`, box as "x0 y0 x1 y1")."""
    from fer_explain.pipeline import face_record

    file, frame, time_s = key
    base = {"file": file, "frame": frame, "time_s": None if time_s is None else round(float(time_s), 3)}
    note = "; ".join(result.notices) or None
    if not result.faces:
        return [{**base, "face": None, "box": None, "label": None, "score": None,
                 **{c: None for c in classes}, "note": note or "no face found"}]
    rows = []
    for face in result.faces:
        record = face_record(face, classes)
        box = record["box"]
        tau = face.prediction.prior_correction  # recorded per row: a saved table must say how it was decided
        face_note = "; ".join(filter(None, [note, None if box is not None else "whole image (no face detected)",
                                            f"prior correction tau = {tau:g}" if tau else None])) or None
        rows.append({**base, "face": record["face"], "box": None if box is None else " ".join(map(str, box)),
                     "label": record["label"], "score": record["score"], **record["probabilities"],
                     "note": face_note})
    return rows


def _timeline_point(result, n_classes):
    """The largest face's probabilities for a frame (NaN when no face: a gap in the plot)."""
    import numpy as np
    if not result.faces:
        return np.full(n_classes, np.nan)
    largest = result.largest_face()
    return np.asarray(largest.prediction.probabilities, dtype=float)


def _write_timelines(timelines: dict, out: Path, classes, warnings: list[str]) -> list[Path]:
    import numpy as np
    import PIL.Image

    from fer_explain.render import timeline_plot
    written = []
    for video, (times, points) in timelines.items():
        if not times:
            continue
        png = out.with_name(f"{out.stem}_{Path(video).stem}_timeline.png")
        try:
            PIL.Image.fromarray(timeline_plot(np.asarray(times), np.stack(points), classes)).save(png)
        except OSError as e:  # the table is saved already; a missing plot must not hide the skipped-file list
            warnings.append(f"could not write {png}: {e.strerror or e}")
        else:
            written.append(png)
    return written


class _Inputs:
    """(key, PIL image) for every readable image and sampled video frame; unreadable files are recorded, not raised,
    because an exception inside this generator would end the whole batch."""

    def __init__(self, files, every_n: int, progress):
        self.files, self.every_n, self.progress = files, every_n, progress
        self.skipped: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self.processed = 0

    def __iter__(self):
        from fer_explain.image_io import is_video, load_image
        from fer_explain.video import iter_video_frames
        for path in self.files:
            name = str(path)
            if is_video(path):
                frames = 0
                try:
                    for frame_index, time_s, frame in iter_video_frames(path, every_n=self.every_n):
                        frames += 1
                        yield (name, frame_index, time_s), frame
                except Exception as e:  # noqa: BLE001 - any decoder failure is this file's problem, not the batch's
                    message = skip_reason(e)
                    if frames == 0:
                        self.skipped.append((name, message))
                    else:
                        self.warnings.append(f"{name}: stopped after {frames} frames: {message}")
                if frames:
                    self.processed += 1
            else:
                try:
                    image = load_image(path)
                except Exception as e:  # noqa: BLE001 - UserError or any decode error: skip, list at the end
                    self.skipped.append((name, skip_reason(e)))
                else:
                    self.processed += 1
                    yield (name, None, None), image
            self.progress.update(1)


def _serialise(rows: list[dict], fmt: str, columns: list[str]) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")  # None is written as an empty cell
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run(args) -> int:
    from fer_explain.image_io import is_video
    from fer_explain.output_paths import check_output_file
    from fer_explain.pipeline import analyze_many, default_checkpoint

    # every check on the user's input before torch and the model load, so mistakes fail fast
    if args.every_n < 1 or args.batch_size < 1 or args.max_faces < 1:
        raise UserError("--every-n, --batch-size and --max-faces must be at least 1")
    tau = check_prior_correction(args.prior_correction)
    out = Path(args.out) if args.out else None
    fmt = args.format or ("json" if out is not None and out.suffix.lower() == ".json" else "csv")
    if out is not None and not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    check_output_file(out, "--out")  # caught now, not when writing after every file was analysed
    checkpoint = args.checkpoint or default_checkpoint()
    if not str(checkpoint).startswith("hf://"):
        from fer_explain.checkpoint import resolve_checkpoint_path
        resolve_checkpoint_path(checkpoint)  # a missing file is reported now, not after the imports below
    files, missing = find_input_files(args.paths)
    if not files:
        return nothing_processed(missing)

    from tqdm import tqdm

    from fer_explain.predictor import Predictor
    predictor = Predictor(checkpoint, device=args.device, precision=args.precision)
    classes = list(predictor.classes)
    if tau:  # a checkpoint without its training class counts fails here, before any file is read
        predictor.class_prior()
        print(f"decision: prior correction tau = {tau:g} (probabilities adjusted for the training class "
              "frequencies)", file=sys.stderr)

    rows: list[dict] = []
    timelines: dict[str, tuple[list, list]] = {}
    # a bar only when there is something to wait for and a terminal to show it; on stderr, so stdout stays clean
    with tqdm(total=len(files), unit="file", file=sys.stderr, dynamic_ncols=True, leave=False,
              disable=not sys.stderr.isatty() or (len(files) < 2 and not any(is_video(f) for f in files))) as bar:
        inputs = _Inputs(files, args.every_n, bar)
        for key, result in analyze_many(predictor, inputs, whole_image=args.whole_image, max_faces=args.max_faces,
                                        batch_size=args.batch_size, prior_correction=tau):
            rows.extend(_rows_for(key, result, classes))
            if key[1] is not None:  # a video frame
                times, points = timelines.setdefault(key[0], ([], []))
                times.append(key[2])
                points.append(_timeline_point(result, len(classes)))

    if inputs.processed == 0:  # no table at all rather than a header without rows
        return nothing_processed(missing + inputs.skipped)
    columns = ["file", "frame", "time_s", "face", "box", "label", "score", *classes, "note"]
    text = _serialise(rows, fmt, columns)
    write_error = None
    if out is not None:
        try:
            out.write_text(text)
        except OSError as e:  # checked writable at the start, yet a full disk or read-only mount fails only now
            write_error = f"--out: could not write {out} ({e.strerror or e}); the table went to stdout instead"
            out = None  # the analysis took minutes: print it rather than lose it
    if out is None:
        sys.stdout.write(text)
    else:
        written = _write_timelines(timelines, out, classes, inputs.warnings)
        faces = sum(r["face"] is not None for r in rows)
        print(f"wrote {len(rows)} rows ({faces} faces) to {out}"
              + "".join(f"\ntimeline: {p}" for p in written), file=sys.stderr)
    for line in inputs.warnings:
        print(f"warning: {line}", file=sys.stderr)
    report_skipped(missing + inputs.skipped)
    if write_error:
        print(f"error: {write_error}", file=sys.stderr)
        return 1
    return 0

