"""Logging set-up shared by every step: timestamps and file:line, to the console and a file."""

import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


# File-system errors a user can fix (where to write, permissions, space): one line, no traceback.
USER_OS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR,
                  errno.EEXIST, errno.ENOENT}


def is_user_os_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in USER_OS_ERRNOS


def describe_error(e: BaseException) -> str:
    """One line for a user error: an OSError of the file system as ``<path>: <what>; <what to do>``,
    anything else as its message."""
    if not isinstance(e, OSError) or e.errno is None or e.filename is None:
        return str(e)
    what = f"{e.filename}: {e.strerror}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}: cannot write there; choose a directory you can write to, or fix its permissions"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{what}; free some space or write elsewhere"
    if e.errno == errno.EEXIST:
        return f"{what}: a file is in the way; move it or choose another path"
    if e.errno == errno.ENOTDIR:
        return f"{what}: a file is in the way of a directory of that path; move it or choose another directory"
    return what


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
    fmt = LOG_FORMAT.replace("%(levelname)s", f"%(levelname)s rank {rank}") if world_size > 1 else LOG_FORMAT
    if log_dir is not None:
        suffix = f".rank-{rank}" if world_size > 1 else ""
        log_file = log_dir / f"{name}-{time.strftime('%Y-%m-%d-%H-%M-%S')}{suffix}.log"
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(log_file))
        except OSError as e:  # an output directory that cannot be written: say so in one line
            if not is_user_os_error(e):
                raise
            logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)
            logging.error("%s", describe_error(e))
            raise SystemExit(1)
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)
    logging.info("Running: %s", " ".join(sys.argv))
    return log_file
