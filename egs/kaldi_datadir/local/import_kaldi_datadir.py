#!/usr/bin/env python3
"""Lhotse manifests from existing Kaldi data directories, one per split (rlhf/kaldi_datadir.py).

Each directory needs ``wav.scp``, ``text`` and ``utt2spk``; ``segments`` is optional (without
it each recording is one utterance, as in Kaldi), and so is ``reco2dur``. ``wav.scp`` entries
may be files or commands ending in ``|`` that write WAV audio. Writes
``<manifest-dir>/<corpus>_{recordings,supervisions}_<split>.jsonl.gz`` for the splits given
(``--train-dir`` is required; ``--dev-dir`` and ``--test-dir`` as you have them).

Everything is checked before anything is written, and every problem is named with its file
and line: the tables' shape and encoding (UTF-8), every utterance having a transcript and a
speaker, every audio file or command giving audio at ``--sampling-rate``, segments within their
recordings, held-out splits disjoint from the training split. Utterances with an empty
transcript are dropped with a warning (Kaldi allows them; CTC training cannot use them). A
replaced audio file redoes the import.
"""

import argparse
from pathlib import Path

from rlhf.cli import add_stage_options, run_step
from rlhf.kaldi_datadir import import_data_dirs
from rlhf.log import setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest_dir", type=Path, help="e.g. data/manifests")
    p.add_argument("--train-dir", type=Path, required=True, help="Kaldi data directory of the training set")
    p.add_argument("--dev-dir", type=Path, default=None, help="... of the dev set (optional)")
    p.add_argument("--test-dir", type=Path, default=None, help="... of the test set (optional)")
    p.add_argument("--corpus", default="kaldi", help="manifest name prefix")
    p.add_argument("--sampling-rate", type=int, default=16000, help="the audio's sampling rate (checked)")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs running wav.scp commands (for their durations)")
    add_stage_options(p)
    args = p.parse_args()
    setup_logging(args.log_dir, "import_kaldi_datadir")
    dirs = {split: d for split, d in (("train", args.train_dir), ("dev", args.dev_dir), ("test", args.test_dir))
            if d is not None}
    run_step(lambda: import_data_dirs(dirs, args.manifest_dir, args.corpus, args.sampling_rate, args.nj,
                                      args.force))


if __name__ == "__main__":
    main()
