"""Completion markers and atomic outputs, so stages can be re-run and resumed safely (docs/robustness.md).

A stage's marker records what its outputs were made from (options and a digest of
each input file). A re-run skips the stage only when the recorded fingerprint equals
the current one; a changed option or input redoes it. The marker is written last,
atomically, so an interrupted stage is never mistaken for a finished one.
"""

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping


def file_digest(path: Path) -> str:
    """sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` only on success.

    Works for files and directories. On error the temporary is removed, so no
    half-written output is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{os.getpid()}.{path.name}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


# Outputs are byte-identical for the same inputs, options and seed (docs/robustness.md): what a
# file's bytes say must not depend on the process that wrote it (its pid, temporary names, the time).

def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` atomically, to the same bytes for the same object: torch names the records of
    its zip archive after the file written, so it writes to a buffer (records under ``archive/``),
    not to the temporary file whose name holds the pid."""
    import torch  # here: most steps that only write markers need no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_manifest(manifest: Any, path: Path) -> None:
    """A lhotse manifest, atomically; a ``.jsonl.gz`` (lhotse's format, the same lines) whose gzip
    header holds no file name and no time, so the same manifest gives the same bytes (lhotse's
    ``to_file`` records the temporary name and the time)."""
    path = Path(path)
    if not path.name.endswith(".jsonl.gz"):
        with atomic_output(path) as tmp:
            manifest.to_file(tmp)
        return
    with atomic_output(path) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
            with io.TextIOWrapper(compressed, encoding="utf-8") as text:
                for item in manifest.to_dicts():
                    print(json.dumps(item, ensure_ascii=False), file=text)


TIMINGS_JSON = "timings.json"


def record_timings(directory: Path, key: str, values: Mapping[str, Any]) -> None:
    """Keep a step's time measurements (seconds, real-time factors, throughput) in
    ``<directory>/timings.json`` under ``key``, apart from its outputs, which then hold the same
    bytes for the same inputs."""
    path = Path(directory) / TIMINGS_JSON
    try:
        timings = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        timings = {}
    timings[key] = values
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")


class StageMarker:
    """The completion marker ``<out_dir>/.<name>.done.json`` of one step."""

    def __init__(self, out_dir: Path, name: str, options: Mapping[str, Any], inputs: Iterable[Path] = ()):
        self.path = Path(out_dir) / f".{name}.done.json"
        self.name = name
        inputs = sorted(Path(p) for p in inputs)
        missing = [str(p) for p in inputs if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{name}: missing input file(s): {', '.join(missing)}")
        self.fingerprint = {
            "options": {k: _jsonable(v) for k, v in sorted(options.items())},
            # Content only, in path order: a moved or copied directory is still complete.
            "inputs": [file_digest(p) for p in inputs],
        }

    def is_complete(self) -> bool:
        """True when a marker exists and records exactly this fingerprint."""
        if not self.path.is_file():
            return False
        try:
            recorded = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if recorded == self.fingerprint:
            return True
        logging.info("%s: outputs exist but were made from other options or inputs; redoing", self.name)
        return False

    def skip_if_complete(self, force: bool) -> bool:
        """Log and return True when the step can be skipped."""
        if force:
            self.invalidate()
            return False
        if self.is_complete():
            logging.info("%s: already complete (%s); skipping. Use --force true to redo.", self.name, self.path)
            return True
        self.invalidate()
        return False

    def invalidate(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self) -> None:
        with atomic_output(self.path) as tmp:
            tmp.write_text(json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
