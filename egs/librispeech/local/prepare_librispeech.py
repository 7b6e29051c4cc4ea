#!/usr/bin/env python3
"""Lhotse manifests of LibriSpeech (or Mini LibriSpeech), with the split names the shared steps use.

Reads ``<corpus-dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and the
chapters' ``.trans.txt`` with lhotse's ``prepare_librispeech``; downloads the parts with
lhotse's helper into ``--download-dir`` only when no ``--corpus-dir`` is given. Writes
``<manifest-dir>/librispeech_{recordings,supervisions}_<split>.jsonl.gz`` for the splits:

    train          the --train-parts pooled (e.g. train-clean-100, or all three for 960 h)
    <part name>    each --dev-part and --test-parts part under its own name (dev-clean, test-other, ...)

Transcripts are kept as LibriSpeech writes them (upper-case words, apostrophes), which is
also how the published LibriSpeech LM spells them.
"""

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from lhotse import RecordingSet, SupervisionSet
from lhotse.recipes import download_librispeech, prepare_librispeech

from rlhf.cli import add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.manifests import write_split_manifests
from rlhf.stage import StageMarker, invalidated_on_error

CORPUS = "librispeech"


def find_corpus(corpus_dir: Optional[Path], download_dir: Path, parts: Sequence[str]) -> Path:
    """The directory holding the parts: ``--corpus-dir`` (or its ``LibriSpeech/``), or a fresh download."""
    if corpus_dir is None:
        logging.info("No --corpus-dir given: downloading %s into %s", " ".join(parts), download_dir)
        return download_librispeech(download_dir, dataset_parts=list(parts))
    if (corpus_dir / "LibriSpeech").is_dir():
        corpus_dir = corpus_dir / "LibriSpeech"
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"--corpus-dir {corpus_dir} is not a directory")
    missing = [p for p in parts if not any((corpus_dir / p).rglob("*.trans.txt"))]
    if missing:
        found = sorted(d.name for d in corpus_dir.iterdir() if d.is_dir())
        raise FileNotFoundError(
            f"--corpus-dir {corpus_dir} has no part {', '.join(missing)} (expected <part>/<speaker>/<chapter>/"
            f"<speaker>-<chapter>.trans.txt with .flac files beside it); it has: {', '.join(found) or 'nothing'}. "
            f"Name the parts you have with --train-parts/--dev-part/--test-parts, or --mini true for Mini LibriSpeech")
    return corpus_dir


def check_complete(corpus_dir: Path, part: str, recordings: RecordingSet) -> None:
    """lhotse drops an utterance whose .flac is missing with a warning only; a broken copy is an error here."""
    listed = {line.split(maxsplit=1)[0] for t in (corpus_dir / part).rglob("*.trans.txt")
              for line in t.read_text().splitlines() if line.strip()}
    missing = sorted(listed - set(recordings.ids))
    if missing:
        raise FileNotFoundError(f"{corpus_dir / part}: {len(missing)} utterance(s) of the .trans.txt files have "
                                f"no .flac, e.g. {', '.join(missing[:5])}; is the copy complete?")


def prepare(corpus_dir: Optional[Path], download_dir: Path, manifest_dir: Path, train_parts: Sequence[str],
            heldout_parts: Sequence[str], num_jobs: int, force: bool) -> None:
    if num_jobs < 1:
        raise ValueError(f"--nj must be above 0, got {num_jobs}")
    with invalidated_on_error(manifest_dir, "prepare_librispeech"):  # stage 1 then refuses an earlier run's manifests
        _prepare(corpus_dir, download_dir, manifest_dir, train_parts, heldout_parts, num_jobs, force)


def _prepare(corpus_dir: Optional[Path], download_dir: Path, manifest_dir: Path, train_parts: Sequence[str],
             heldout_parts: Sequence[str], num_jobs: int, force: bool) -> None:
    parts = list(dict.fromkeys([*train_parts, *heldout_parts]))
    corpus_dir = find_corpus(corpus_dir, download_dir, parts)
    transcripts = sorted(t for p in parts for t in (corpus_dir / p).rglob("*.trans.txt"))
    marker = StageMarker(manifest_dir, "prepare_librispeech",
                         {"corpus_dir": corpus_dir, "train_parts": list(train_parts),
                          "heldout_parts": list(heldout_parts)}, transcripts)
    if marker.skip_if_complete(force):
        return
    manifests = prepare_librispeech(corpus_dir, dataset_parts=parts, output_dir=None, num_jobs=num_jobs)
    for part in parts:
        check_complete(corpus_dir, part, manifests[part]["recordings"])
    splits = {"train": ([manifests[p]["recordings"] for p in train_parts],
                        [manifests[p]["supervisions"] for p in train_parts])}
    splits.update({p: ([manifests[p]["recordings"]], [manifests[p]["supervisions"]]) for p in heldout_parts})
    for split, (recordings, supervisions) in splits.items():
        recordings = RecordingSet.from_recordings(r for part in recordings for r in part)
        supervisions = SupervisionSet.from_segments(s for part in supervisions for s in part)
        write_split_manifests(manifest_dir, CORPUS, split, recordings, supervisions)
        logging.info("%s: %d utterances, %.2f hours, %d speakers", split, len(supervisions),
                     sum(r.duration for r in recordings) / 3600, len({s.speaker for s in supervisions}))
    marker.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest_dir", type=Path, help="e.g. data/manifests")
    p.add_argument("--corpus-dir", type=Path, default=None, help="a local LibriSpeech directory (holding the parts)")
    p.add_argument("--download-dir", type=Path, default=Path("download"), help="used without --corpus-dir")
    p.add_argument("--train-parts", default="train-clean-100", help="space-separated; pooled into the train split")
    p.add_argument("--dev-part", default="dev-clean", help="held-out part for the per-epoch WER")
    p.add_argument("--test-parts", default="test-clean test-other", help="space-separated; may be empty")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs reading the audio headers")
    add_stage_options(p)
    args = p.parse_args()
    setup_logging(args.log_dir, "prepare_librispeech")
    heldout = list(dict.fromkeys([args.dev_part, *args.test_parts.split()]))
    run_step(lambda: prepare(args.corpus_dir, args.download_dir, args.manifest_dir, args.train_parts.split(),
                             heldout, args.nj, args.force))


if __name__ == "__main__":
    main()
