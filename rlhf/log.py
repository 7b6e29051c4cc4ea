"""Logging set-up shared by every step: timestamps and file:line, to the console and a file."""

import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logging(log_dir: Optional[Path], name: str, level: int = logging.INFO) -> Optional[Path]:
    """Log to stderr and, when ``log_dir`` is given, to ``log_dir/<name>-<time>.log``.

    Returns the log file's path (or None). The command line is logged first, as
    Kaldi's steps echo theirs, so a log says how to reproduce itself. In a job of several
    processes (torchrun) each line names its rank, each rank has its own file
    (``<name>-<time>.rank-N.log``) and only rank 0 prints more than warnings to the console.
    """
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    console = logging.StreamHandler(sys.stderr)
    if rank > 0:
        console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [console]
    log_file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        suffix = f".rank-{rank}" if world_size > 1 else ""
        log_file = log_dir / f"{name}-{time.strftime('%Y-%m-%d-%H-%M-%S')}{suffix}.log"
        handlers.append(logging.FileHandler(log_file))
    fmt = LOG_FORMAT.replace("%(levelname)s", f"%(levelname)s rank {rank}") if world_size > 1 else LOG_FORMAT
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)
    logging.info("Running: %s", " ".join(sys.argv))
    return log_file
