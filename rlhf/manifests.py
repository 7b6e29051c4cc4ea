"""Names of the manifests every recipe's steps exchange (icefall's conventions).

Imports lhotse (and with it torch) only where a manifest is written: stage 0's synthesizer
imports this module into processes that must stay light to fork (rlhf/corpus/synthesize.py).
"""

from pathlib import Path
from typing import TYPE_CHECKING

from rlhf.stage import atomic_output

if TYPE_CHECKING:
    from lhotse import RecordingSet, SupervisionSet

SPLITS = ("train", "dev", "test")


def manifest_path(directory: Path, corpus: str, kind: str, split: str) -> Path:
    """``<directory>/<corpus>_<kind>_<split>.jsonl.gz``; kind is recordings, supervisions or cuts."""
    return Path(directory) / f"{corpus}_{kind}_{split}.jsonl.gz"


def write_split_manifests(directory: Path, corpus: str, split: str, recordings: "RecordingSet",
                          supervisions: "SupervisionSet") -> None:
    """Write one split's recordings and supervisions under the names above, each atomically.

    What a recipe's ``local/`` hands to the shared steps; the manifests are validated first.
    """
    from lhotse import validate_recordings_and_supervisions

    validate_recordings_and_supervisions(recordings, supervisions)
    for kind, manifest in (("recordings", recordings), ("supervisions", supervisions)):
        with atomic_output(manifest_path(directory, corpus, kind, split)) as tmp:
            manifest.to_file(tmp)  # the temporary name keeps the .jsonl.gz that selects the format
