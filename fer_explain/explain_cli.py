"""`python -m fer_explain explain IMAGE`: explanation panels and a JSON record for every face in one image.

Writes into --out: `face_<i>.png` (crop, overlays, token-saliency grid, probabilities), `annotated.png` (boxes and
labels on the photo) and `explanation.json` = {"faces": [...], "notices": [...], "checkpoint": ..., "target": ...},
where each face carries its box, label, probabilities, the 7x7 grids (before upsampling) and faithfulness scores.
The exit code is 1 when no face was found (the JSON and the annotated photo are written all the same), as `predict`
exits non-zero when nothing could be processed; `--whole-image` explains the whole picture as one face instead.
`--prior-correction TAU` changes only which class is predicted (and so explained by default) and the probabilities
shown: the maps of a given class are the same at any TAU (fer_explain.decision).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from fer_explain.classes import CLASSES, parse_target
from fer_explain.decision import add_prior_correction_argument, check_prior_correction
from fer_explain.errors import UserError

DEFAULT_METHODS = ("spatial_attention", "token_saliency", "gradcam")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="a photo (faces are detected in it)")
    parser.add_argument("--checkpoint", help="model .safetensors, run dir or hf://owner/repo/file "
                                             "(default: the Bi-LSTM checkpoint in checkpoints/)")
    parser.add_argument("--target", help="class to explain (default: each face's predicted class); "
                                          f"one of {', '.join(CLASSES)}")
    parser.add_argument("--whole-image", action="store_true", help="when no face is found, explain the whole image")
    parser.add_argument("--max-faces", type=int, default=20, help="faces kept (the largest)")
    parser.add_argument("--out", help="output folder (default: explanations/<image name>)")
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


def run(args) -> int:
    from fer_explain.image_io import load_image
    from fer_explain.output_paths import check_output_folder
    from fer_explain.pipeline import analyze_image, default_checkpoint, explanation_record

    # every check on the user's input before torch and the model load, so mistakes fail fast
    target = parse_target(args.target)
    if args.max_faces < 1:
        raise UserError("--max-faces must be at least 1")
    tau = check_prior_correction(args.prior_correction)
    image = load_image(args.image)
    out = Path(args.out) if args.out else Path("explanations") / Path(args.image).stem
    check_output_folder(out, "--out")
    checkpoint = args.checkpoint or default_checkpoint()

    from fer_explain.explain import check_methods
    from fer_explain.predictor import Predictor
    from fer_explain.render import explanation_panel
    methods = tuple(check_methods(args.methods))
    predictor = Predictor(checkpoint, device=args.device, precision=args.precision)
    if tau:
        predictor.class_prior()  # a checkpoint without its training class counts fails before any work

    result = analyze_image(predictor, image, whole_image=args.whole_image, max_faces=args.max_faces,
                           prior_correction=tau)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. no permission, or a file where a parent folder should be
        raise UserError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    records = []
    for face in result.faces:
        explanation = predictor.explain(face.prediction, target=target, methods=methods,
                                        faithfulness=not args.no_faithfulness)
        records.append(explanation_record(face, explanation, predictor.classes))
        _save_png(explanation_panel(face.crop.display, face.prediction, explanation, predictor.classes),
                  out / f"face_{face.index}.png")
    _save_png(result.annotated(), out / "annotated.png")
    report = {"faces": records, "notices": result.notices, "checkpoint": str(checkpoint),
              "model": predictor.name, "target": target or "predicted", "prior_correction": tau,
              "methods": list(methods), "image": str(args.image)}
    (out / "explanation.json").write_text(compact_json(report) + "\n")

    for notice in result.notices:
        print(notice, file=sys.stderr)
    for record in records:
        print(f"face {record['face']}: {record['label']} {record['score']:.2f} "
              f"(explained: {record['target']})", file=sys.stderr)
    panels = f"{len(records)} face panel{'s' if len(records) != 1 else ''}"
    print(f"wrote {panels}, annotated.png and explanation.json to {out}", file=sys.stderr)
    if not records:
        print("error: no face to explain; --whole-image explains the whole picture as one face", file=sys.stderr)
        return 1
    return 0
