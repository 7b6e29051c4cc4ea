"""Names of the manifests every recipe's steps exchange (icefall's conventions)."""

from pathlib import Path

SPLITS = ("train", "dev", "test")


def manifest_path(directory: Path, corpus: str, kind: str, split: str) -> Path:
    """``<directory>/<corpus>_<kind>_<split>.jsonl.gz``; kind is recordings, supervisions or cuts."""
    return Path(directory) / f"{corpus}_{kind}_{split}.jsonl.gz"
