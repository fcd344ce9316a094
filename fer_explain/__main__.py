"""Runs the command line: `python -m fer_explain --help`."""
import sys

from fer_explain.cli import main

sys.exit(main())
