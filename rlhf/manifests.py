"""Names of the manifests every recipe's steps exchange (icefall's conventions).

Imports lhotse (and with it torch) only where a manifest is written: stage 0's synthesizer
imports this module into processes that must stay light to fork (rlhf/corpus/synthesize.py).
"""

import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from rlhf.stage import write_manifest

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
        write_manifest(manifest, manifest_path(directory, corpus, kind, split))


def check_disjoint_splits(ids: Mapping[str, Iterable[str]], where: str, train_split: str = "train") -> None:
    """Refuse splits that share utterance ids with the training split (an evaluation on them would
    measure utterances the model was trained on); warn about held-out splits sharing some.
    ``ids``: each split's utterance ids; ``where`` names their files in the messages."""
    sets = {split: set(split_ids) for split, split_ids in ids.items()}
    for a, b in itertools.combinations(sets, 2):
        shared = sorted(sets[a] & sets[b])
        if not shared:
            continue
        what = (f"{where}: splits {a} and {b} share {len(shared)} utterance id(s) ({len(shared)} of {len(sets[b])} "
                f"in {b}), e.g. {', '.join(shared[:5])}")
        if train_split in (a, b):
            raise ValueError(f"{what}; held-out splits must be disjoint from {train_split}: give each split its "
                             f"own utterances (the same directory or list twice?)")
        logging.warning("%s; their results are not independent", what)
