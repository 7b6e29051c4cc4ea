"""rlhf/stage.py: completion markers that see their upstream steps and their outputs, and the
temporaries of killed runs cleaned up when a step starts."""

import logging
import os
import signal
import subprocess
import sys

import pytest

from rlhf.stage import StageMarker, atomic_output, options_match

KILLED_WRITER = """
import sys, time
from pathlib import Path
from rlhf.stage import atomic_output
with atomic_output(Path(sys.argv[1])) as tmp:
    if sys.argv[2] == "dir":
        tmp.mkdir()
        (tmp / "part.wav").write_bytes(b"RIFF")
    else:
        tmp.write_bytes(b"half a checkpoint")
    print("writing", flush=True)
    time.sleep(60)
"""


def killed_writer(path, kind):
    """A process writing ``path`` through atomic_output, killed with SIGKILL halfway: its temporary stays."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), kind], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    tmp = path.with_name(f".tmp.{proc.pid}.{path.name}")
    assert tmp.exists()
    return tmp


def test_temporaries_of_killed_runs_are_removed_when_a_step_starts(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    exp = tmp_path / "exp"
    exp.mkdir()
    checkpoint = killed_writer(exp / "epoch-5.pt", "file")          # a partial checkpoint
    nested = killed_writer(exp / "lattices" / "stats.json", "file")
    corpus = killed_writer(tmp_path / "synth", "dir")                # a partial corpus directory, beside the step's
    live = exp / f".tmp.{os.getpid()}.epoch-6.pt"                    # a running process's: kept
    live.write_bytes(b"")
    (exp / "epoch-1.pt").write_bytes(b"")
    StageMarker(exp, "train", {}).skip_if_complete(force=False)
    assert not checkpoint.exists() and not nested.exists() and live.exists() and (exp / "epoch-1.pt").exists()
    assert "removed 2 temporary file(s) of killed earlier runs" in caplog.text
    assert corpus.exists()  # another directory's: its own step removes it
    StageMarker(tmp_path / "synth", "synthesize", {}).skip_if_complete(force=False)
    assert not corpus.exists()


def test_writing_an_output_again_removes_its_killed_temporary(tmp_path):
    stale = killed_writer(tmp_path / "epoch-3.pt", "file")
    other = killed_writer(tmp_path / "epoch-4.pt", "file")
    with atomic_output(tmp_path / "epoch-3.pt") as tmp:
        tmp.write_bytes(b"whole")
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["epoch-3.pt", other.name])


def test_marker_of_an_unfinished_upstream_step_stops_the_step(tmp_path):
    upstream = tmp_path / "lattices" / ".make-lattices.done.json"
    upstream.parent.mkdir()
    (tmp_path / "lattices" / "stats.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="step make-lattices has not completed"):
        StageMarker(tmp_path, "qlearn", {}, [tmp_path / "lattices" / "stats.json", upstream])
    upstream.write_text("{}")
    out = tmp_path / "lattices" / "train" / "q-frame"
    marker = StageMarker(tmp_path, "qlearn", {}, [tmp_path / "lattices" / "stats.json", upstream], outputs=[out])
    out.mkdir(parents=True)
    marker.write()
    assert marker.skip_if_complete(force=False)
    out.rmdir()  # replaced by a redone upstream step: the marker no longer stands
    assert not marker.skip_if_complete(force=False)


def test_options_match_ignores_only_what_the_marker_has_beyond_the_options():
    recorded = {"a": 1, "sub": {"x": 2, "gone": 3}, "dropped": {"y": 1}}
    assert options_match(recorded, {"a": 1, "sub": {"x": 2}})
    assert not options_match(recorded, {"a": 1, "sub": {"x": 3}})
    assert not options_match(recorded, {"a": 1, "sub": {"x": 2, "new": 0}})  # an option the marker lacks
    assert not options_match(None, {"a": 1})
