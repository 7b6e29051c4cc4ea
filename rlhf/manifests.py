"""Names of the manifests every recipe's steps exchange (icefall's conventions)."""

from pathlib import Path

from lhotse import RecordingSet, SupervisionSet, validate_recordings_and_supervisions

from rlhf.stage import write_manifest

SPLITS = ("train", "dev", "test")


def manifest_path(directory: Path, corpus: str, kind: str, split: str) -> Path:
    """``<directory>/<corpus>_<kind>_<split>.jsonl.gz``; kind is recordings, supervisions or cuts."""
    return Path(directory) / f"{corpus}_{kind}_{split}.jsonl.gz"


def write_split_manifests(directory: Path, corpus: str, split: str, recordings: RecordingSet,
                          supervisions: SupervisionSet) -> None:
    """Write one split's recordings and supervisions under the names above, each atomically.

    What a recipe's ``local/`` hands to the shared steps; the manifests are validated first.
    """
    validate_recordings_and_supervisions(recordings, supervisions)
    for kind, manifest in (("recordings", recordings), ("supervisions", supervisions)):
        write_manifest(manifest, manifest_path(directory, corpus, kind, split))
