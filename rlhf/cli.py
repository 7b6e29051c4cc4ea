"""Command-line conventions shared by every step's entry point."""

import argparse
import logging
from pathlib import Path
from typing import Callable


def str2bool(value: str) -> bool:
    """Kaldi-style booleans: exactly ``true`` or ``false``."""
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value == "true"


def add_stage_options(parser: argparse.ArgumentParser) -> None:
    """``--force`` (redo a complete step) and ``--log-dir`` (where the step's log file goes)."""
    parser.add_argument("--force", type=str2bool, default=False, help="redo even when complete (true/false)")
    parser.add_argument("--log-dir", type=Path, default=None, help="also write the log under this directory")


# Errors a user can fix (bad input, missing files, a directory in the way): one clear log
# line and exit status 1, not a traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError)


def run_step(step: Callable[[], None]) -> None:
    """Run a step's body, turning a user error into a logged message and exit status 1."""
    try:
        step()
    except USER_ERRORS as e:
        logging.error("%s", e)
        raise SystemExit(1)
