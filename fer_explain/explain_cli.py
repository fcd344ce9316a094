"""`python -m fer_explain explain PATH...`: explanation panels and a JSON record for every face in photos.

For one photo, writes into --out: `face_<i>.png` (crop, overlays, token-saliency grid, probabilities),
`annotated.png` (boxes and labels on the photo) and `explanation.json` = {"faces": [...], "notices": [...],
"checkpoint": ..., "target": ...}, where each face carries its box, label, probabilities, the 7x7 grids (before
upsampling) and faithfulness scores. For several photos or a folder (searched recursively), each photo gets those
files in its own subfolder of --out, named after it, and `index.json` lists every photo, its subfolder and labels,
and the files skipped. A bad file in a batch is skipped and listed at the end, never the end of the batch.
The exit code is 1 when no face was found in any photo (the JSON and the annotated photos are written all the same),
as `predict` exits non-zero when nothing could be processed; `--whole-image` explains the whole picture as one face
instead. `--prior-correction TAU` changes only which class is predicted (and so explained by default) and the
probabilities shown: the maps of a given class are the same at any TAU (fer_explain.decision). The probabilities are
divided by the checkpoint's calibration temperature (`temperature` in the JSON; fer_explain.temperature).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from fer_explain.classes import CLASSES, parse_target
from fer_explain.decision import add_prior_correction_argument, check_prior_correction
from fer_explain.errors import UserError

DEFAULT_METHODS = ("spatial_attention", "token_saliency", "gradcam")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="photos, or folders of photos (searched recursively); faces are detected in each")
    parser.add_argument("--checkpoint", help="model .safetensors, run dir or hf://owner/repo/file "
                                             "(default: the Bi-LSTM checkpoint in checkpoints/)")
    parser.add_argument("--target", help="class to explain (default: each face's predicted class); "
                                          f"one of {', '.join(CLASSES)}")
    parser.add_argument("--whole-image", action="store_true", help="when no face is found, explain the whole image")
    parser.add_argument("--max-faces", type=int, default=20, help="faces kept (the largest)")
    parser.add_argument("--out", help="output folder (default: explanations/<photo name> for one photo, "
                                      "explanations/ for several, one subfolder per photo)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help=f"explanations to compute (default: {' '.join(DEFAULT_METHODS)}; "
                             "also token_occlusion, gradcam++)")
    parser.add_argument("--no-faithfulness", action="store_true", help="skip the deletion/insertion scores")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="prediction precision: auto = bf16 autocast on CUDA, float32 on CPU")
    add_prior_correction_argument(parser)


def compact_json(value) -> str:
    """Indented JSON with each innermost list of numbers on one line (a 7x7 grid reads as 7 rows)."""
    text = json.dumps(value, indent=2)
    return re.sub(r"\[\s*([-0-9.eE+,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def _save_png(array, path: Path) -> None:
    import numpy as np
    import PIL.Image
    PIL.Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


@dataclass(frozen=True)
class ExplainSettings:
    checkpoint: str
    target: str | None  # None: each face's predicted class
    methods: tuple[str, ...]
    prior_correction: float
    whole_image: bool
    max_faces: int
    faithfulness: bool


def explain_photo(predictor, photo: Path, image, out: Path, settings: ExplainSettings) -> tuple[list[dict], list[str]]:
    """Panels, annotated photo and explanation.json of one photo in `out`; its face records and notices."""
    from fer_explain.pipeline import analyze_image, explanation_record
    from fer_explain.render import explanation_panel

    result = analyze_image(predictor, image, whole_image=settings.whole_image, max_faces=settings.max_faces,
                           prior_correction=settings.prior_correction)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. no permission, or a file where a parent folder should be
        raise UserError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    records = []
    for face in result.faces:
        explanation = predictor.explain(face.prediction, target=settings.target, methods=settings.methods,
                                        faithfulness=settings.faithfulness)
        records.append(explanation_record(face, explanation, predictor.classes))
        _save_png(explanation_panel(face.crop.display, face.prediction, explanation, predictor.classes),
                  out / f"face_{face.index}.png")
    _save_png(result.annotated(), out / "annotated.png")
    report = {"faces": records, "notices": result.notices, "checkpoint": settings.checkpoint,
              "model": predictor.name, "target": settings.target or "predicted",
              "prior_correction": settings.prior_correction, "temperature": predictor.temperature,
              "methods": list(settings.methods), "image": str(photo)}
    (out / "explanation.json").write_text(compact_json(report) + "\n")
    return records, result.notices


def subfolder_names(files: list[Path]) -> list[str]:
    """One output subfolder per photo, named after it; photos of the same name get -2, -3, ... in input order."""
    names, used = [], set()
    for path in files:
        name, k = path.stem, 1
        while name.lower() in used:  # case-insensitive file systems would merge "A" and "a"
            k += 1
            name = f"{path.stem}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


def run(args) -> int:
    from fer_explain.image_io import is_video, load_image
    from fer_explain.input_batch import find_input_files, nothing_processed, report_skipped, skip_reason
    from fer_explain.output_paths import check_output_folder
    from fer_explain.pipeline import default_checkpoint

    # every check on the user's input before torch and the model load, so mistakes fail fast
    target = parse_target(args.target)
    if args.max_faces < 1:
        raise UserError("--max-faces must be at least 1")
    tau = check_prior_correction(args.prior_correction)
    single = len(args.paths) == 1 and not Path(args.paths[0]).is_dir()
    if single:  # one photo: its files straight into --out, and a bad photo is the command's error
        photo = Path(args.paths[0])
        jobs, skipped = [(photo, load_image(photo), None)], []
        out = Path(args.out) if args.out else Path("explanations") / photo.stem
    else:
        files, skipped = find_input_files(args.paths)
        skipped += [(str(f), "a video: `explain` takes photos (`predict` samples videos)")
                    for f in files if is_video(f)]
        photos = [f for f in files if not is_video(f)]
        jobs = [(f, None, name) for f, name in zip(photos, subfolder_names(photos))]
        out = Path(args.out) if args.out else Path("explanations")
        if not jobs:
            return nothing_processed(skipped)
    check_output_folder(out, "--out")
    checkpoint = args.checkpoint or default_checkpoint()

    from tqdm import tqdm

    from fer_explain.explain import check_methods
    from fer_explain.predictor import Predictor
    settings = ExplainSettings(str(checkpoint), target, tuple(check_methods(args.methods)), tau, args.whole_image,
                               args.max_faces, not args.no_faithfulness)
    predictor = Predictor(checkpoint, device=args.device, precision=args.precision)
    if tau:
        predictor.class_prior()  # a checkpoint without its training class counts fails before any work

    index, faces = [], 0
    bar = dict(unit="photo", file=sys.stderr, leave=False, disable=len(jobs) < 2 or not sys.stderr.isatty())
    for photo, image, name in tqdm(jobs, **bar):
        folder = out if name is None else out / name
        try:
            records, notices = explain_photo(predictor, photo, image if image is not None else load_image(photo),
                                             folder, settings)
        except Exception as e:  # noqa: BLE001 - in a batch, one bad photo is listed, not the end of the others
            if single:
                raise
            skipped.append((str(photo), skip_reason(e)))
            continue
        faces += len(records)
        index.append({"image": str(photo), "folder": str(folder), "faces": len(records),
                      "labels": [r["label"] for r in records], "notices": notices})
        prefix = "" if single else f"{photo}: "
        for line in [*notices, *(f"face {r['face']}: {r['label']} {r['score']:.2f} (explained: {r['target']})"
                                 for r in records)]:
            tqdm.write(prefix + line, file=sys.stderr)  # above the progress bar, not through it
    if not index:
        return nothing_processed(skipped)
    if single:
        panels = f"{faces} face panel{'s' if faces != 1 else ''}"
        print(f"wrote {panels}, annotated.png and explanation.json to {out}", file=sys.stderr)
    else:
        (out / "index.json").write_text(json.dumps({"photos": index, "skipped": [
            {"file": f, "reason": why} for f, why in skipped]}, indent=2) + "\n")
        print(f"wrote {faces} face panel{'s' if faces != 1 else ''} for {len(index)} photo"
              f"{'s' if len(index) != 1 else ''} into {out} (one subfolder each; index.json)", file=sys.stderr)
    report_skipped(skipped)
    if not faces:
        print("error: no face to explain; --whole-image explains the whole picture as one face", file=sys.stderr)
        return 1
    return 0
