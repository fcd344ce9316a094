"""`python -m fer_explain COMMAND`: one entry point; each command lives in its own module with
`add_arguments(parser)` and `run(args) -> int`. A `UserError` becomes one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import importlib

from fer_explain.errors import run_command

# command -> (module, one-line help)
COMMANDS = {
    "evaluate": ("fer_explain.evaluate", "accuracy, per-class metrics and confusion matrix of a checkpoint on a split"),
    "calibrate": ("fer_explain.calibrate_cli", "fit a checkpoint's temperature on val so its probabilities are "
                                               "calibrated"),
    "cost": ("fer_explain.cost", "parameters, FLOPs, latency and memory of a model"),
    "predict": ("fer_explain.predict_cli", "emotions of every face in images, folders and videos"),
    "explain": ("fer_explain.explain_cli", "explanation panels and JSON for every face in photos and folders"),
    "bench": ("fer_explain.bench", "latency of prediction and of each explanation"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_explain",
                                     description="fer-explain: facial emotion recognition and its explanations")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # argument definitions import only light modules, so `--help` stays fast
        importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    return run_command(lambda: importlib.import_module(args._module).run(args))
