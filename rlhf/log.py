"""Logging set-up shared by every step: timestamps and file:line, to the console and a file."""

import logging
import sys
import time
from pathlib import Path
from typing import Optional

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logging(log_dir: Optional[Path], name: str, level: int = logging.INFO) -> Optional[Path]:
    """Log to stderr and, when ``log_dir`` is given, to ``log_dir/<name>-<time>.log``.

    Returns the log file's path (or None). The command line is logged first, as
    Kaldi's steps echo theirs, so a log says how to reproduce itself.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / f"{name}-{time.strftime('%Y-%m-%d-%H-%M-%S')}.log"
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.info("Running: %s", " ".join(sys.argv))
    return log_file
