#!/usr/bin/env python3
"""Lhotse manifests of the yesno corpus (60 recordings; 30 train / 30 test, as Kaldi and icefall split it).

Writes ``<manifest-dir>/yesno_{recordings,supervisions}_{train,test}.jsonl.gz``. Reads a local
copy of ``waves_yesno`` when ``--corpus-dir`` is given; otherwise downloads it with lhotse's
helper into ``--download-dir``.
"""

import argparse
import logging
from pathlib import Path

from lhotse.recipes import download_yesno, prepare_yesno

from rlhf.cli import add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.manifests import write_split_manifests
from rlhf.stage import StageMarker, invalidated_on_error

NUM_WAVES = 60


def find_corpus(corpus_dir: Path | None, download_dir: Path) -> Path:
    """The directory holding the 60 wave files: the given one, or a fresh download."""
    if corpus_dir is None:
        logging.info("No --corpus-dir given: downloading yesno into %s", download_dir)
        return download_yesno(download_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"--corpus-dir {corpus_dir} is not a directory")
    waves = sorted(corpus_dir.glob("*.wav"))
    if len(waves) != NUM_WAVES:
        raise ValueError(f"--corpus-dir {corpus_dir} has {len(waves)} .wav files; waves_yesno has {NUM_WAVES} "
                         f"(named like 0_1_0_0_1_0_1_1.wav)")
    return corpus_dir


def prepare(corpus_dir: Path | None, download_dir: Path, manifest_dir: Path, force: bool) -> None:
    with invalidated_on_error(manifest_dir, "prepare_yesno"):  # stage 1 then refuses an earlier run's manifests
        _prepare(corpus_dir, download_dir, manifest_dir, force)


def _prepare(corpus_dir: Path | None, download_dir: Path, manifest_dir: Path, force: bool) -> None:
    corpus_dir = find_corpus(corpus_dir, download_dir)
    marker = StageMarker(manifest_dir, "prepare_yesno", {"corpus_dir": corpus_dir}, sorted(corpus_dir.glob("*.wav")))
    if marker.skip_if_complete(force):
        return
    # Built in memory, then each file written atomically (lhotse's output_dir would write in place).
    manifests = prepare_yesno(corpus_dir, output_dir=None)
    for split, m in manifests.items():
        write_split_manifests(manifest_dir, "yesno", split, m["recordings"], m["supervisions"])
        logging.info("%s: %d recordings, %.1f minutes", split, len(m["recordings"]),
                     sum(r.duration for r in m["recordings"]) / 60)
    marker.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("manifest_dir", type=Path, help="e.g. data/manifests")
    p.add_argument("--corpus-dir", type=Path, default=None, help="a local waves_yesno directory")
    p.add_argument("--download-dir", type=Path, default=Path("download"), help="used without --corpus-dir")
    add_stage_options(p)
    args = p.parse_args()
    setup_logging(args.log_dir, "prepare_yesno")
    run_step(lambda: prepare(args.corpus_dir, args.download_dir, args.manifest_dir, args.force))


if __name__ == "__main__":
    main()
