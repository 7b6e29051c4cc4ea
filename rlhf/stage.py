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
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

# The temporary name atomic_output gives an output: ``.tmp.<pid>.<name>`` beside it.
_TEMPORARY = re.compile(r"^\.tmp\.([0-9]+)\.(.+)$")


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
    remove_stale_temporaries(path.parent, recursive=False, name=path.name)  # a killed earlier attempt's
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


def _process_is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


def remove_stale_temporaries(directory: Path, recursive: bool = True, name: str = "") -> list[Path]:
    """Remove the temporaries (``.tmp.<pid>.<name>``, files or directories) that atomic_output
    left in ``directory`` for processes that no longer run (killed with SIGKILL, say, which
    leaves no chance to clean up); with ``name``, only those of that output. Returns what was removed.

    A process that still runs on this machine keeps its temporaries. Temporaries of other
    machines sharing the file system cannot be told apart, so a step cleans up only when it
    starts, before the processes of its own job write anything.
    """
    removed: list[Path] = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match:
            if (not name or match.group(2) == name) and not _process_is_alive(int(match.group(1))):
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        elif recursive and not entry.name.startswith(".tmp.") and entry.is_dir(follow_symlinks=False):
            removed += remove_stale_temporaries(Path(entry.path), recursive=True, name=name)
    return removed


def _marker_step(path: Path) -> str:
    """The step whose completion marker ``path`` is (``.<step>.done.json``), or ''."""
    match = re.match(r"^\.(.+)\.done\.json$", path.name)
    return match.group(1) if match else ""


def options_match(recorded: Any, current: Any) -> bool:
    """True when ``recorded`` has every option of ``current`` with the same value; options that only
    ``recorded`` has (at any depth of nested dicts) are left out of the comparison."""
    if isinstance(current, dict) and isinstance(recorded, dict):
        return all(k in recorded and options_match(recorded[k], v) for k, v in current.items())
    return recorded == current


class StageMarker:
    """The completion marker ``<out_dir>/.<name>.done.json`` of one step.

    ``inputs`` are files whose content the outputs were made from; among them may be the
    markers of the steps that made those files, so a step whose upstream step has not
    completed (failed, interrupted, or being redone) refuses to run, and one whose upstream
    step was redone is redone too. ``outputs`` are paths the step makes: a marker whose
    outputs are gone (removed, or replaced by an upstream step) is not complete.
    """

    def __init__(self, out_dir: Path, name: str, options: Mapping[str, Any], inputs: Iterable[Path] = (),
                 outputs: Iterable[Path] = ()):
        self.path = Path(out_dir) / f".{name}.done.json"
        self.name = name
        self.outputs = [Path(p) for p in outputs]
        inputs = sorted(Path(p) for p in inputs)
        unfinished = [p for p in inputs if _marker_step(p) and not p.is_file()]
        if unfinished:
            raise FileNotFoundError(
                f"{name}: step {_marker_step(unfinished[0])} has not completed ({unfinished[0]} is missing: its "
                f"last run failed, was interrupted or is still running, so its outputs may be stale or partial); "
                f"run that step (its stage) again first")
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
        if not (isinstance(recorded, dict) and recorded.keys() == self.fingerprint.keys()
                and recorded["inputs"] == self.fingerprint["inputs"]
                and options_match(recorded["options"], self.fingerprint["options"])):
            logging.info("%s: outputs exist but were made from other options or inputs; redoing", self.name)
            return False
        gone = [str(p) for p in self.outputs if not p.exists()]
        if gone:
            logging.info("%s: marked complete but %s is gone; redoing", self.name, ", ".join(gone))
            return False
        return True

    def skip_if_complete(self, force: bool) -> bool:
        """Log and return True when the step can be skipped.

        First removes the temporaries that killed earlier runs left in the step's directory
        (and the step's own directory's, beside it).
        """
        out_dir = self.path.parent
        stale = remove_stale_temporaries(out_dir) + remove_stale_temporaries(out_dir.parent, recursive=False,
                                                                             name=out_dir.name)
        if stale:
            logging.info("%s: removed %d temporary file(s) of killed earlier runs: %s", self.name, len(stale),
                         ", ".join(str(p) for p in stale[:5]) + (" ..." if len(stale) > 5 else ""))
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


@contextlib.contextmanager
def invalidated_on_error(out_dir: Path, name: str) -> Iterator[None]:
    """Remove step ``name``'s marker in ``out_dir`` when the body fails, even in checks made before
    the step decides whether to run: its inputs have changed, so the outputs of its last complete
    run must not be taken by a later stage for outputs of the current inputs."""
    try:
        yield
    except BaseException:
        (Path(out_dir) / f".{name}.done.json").unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
