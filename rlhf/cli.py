"""Command-line conventions shared by every step's entry point."""

import argparse
from pathlib import Path


def str2bool(value: str) -> bool:
    """Kaldi-style booleans: exactly ``true`` or ``false``."""
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value == "true"


def add_stage_options(parser: argparse.ArgumentParser) -> None:
    """``--force`` (redo a complete step) and ``--log-dir`` (where the step's log file goes)."""
    parser.add_argument("--force", type=str2bool, default=False, help="redo even when complete (true/false)")
    parser.add_argument("--log-dir", type=Path, default=None, help="also write the log under this directory")
