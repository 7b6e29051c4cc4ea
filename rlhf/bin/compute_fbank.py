"""Kaldi-compatible fbank for every split, stored with lhotse's lilcom chunky writer (steps/compute_fbank.sh).

Writes ``<fbank_dir>/<corpus>_cuts_<split>.jsonl.gz`` (cuts with features attached) and
the lilcom archives under ``<fbank_dir>/<corpus>_feats_<split>/``. Feature paths in the
cuts are absolute, so the cuts stay valid wherever the command is run from.

With ``--speed-perturb true`` the training split also gets each utterance at speeds 0.9 and
1.1 (lhotse's resampling speed perturbation, as in Kaldi, icefall and ESPnet recipes): three
cuts per utterance, the copies named ``<id>_sp0.9`` and ``<id>_sp1.1``.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, add_stage_options, run_step, str2bool
from rlhf.features import SPEED_FACTORS, TRAIN_SPLIT, compute_fbank
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("manifest_dir", type=Path, help="the recordings and supervisions manifests, e.g. data/manifests")
    p.add_argument("fbank_dir", type=Path, help="where the features and cut manifests go, e.g. data/fbank")
    p.add_argument("--corpus", default="synth",
                   help="name prefix of the manifests: <manifest_dir>/<corpus>_recordings_<split>.jsonl.gz")
    p.add_argument("--splits", default="train dev test", help="the splits to compute, space-separated")
    p.add_argument("--nj", type=int, default=1, help="parallel feature-extraction processes")
    p.add_argument("--num-mel-bins", type=int, default=80,
                   help="mel filterbank bins per frame (e.g. 23 for 8 kHz audio)")
    p.add_argument("--speed-perturb", type=str2bool, default=False,
                   help=f"add copies of every '{TRAIN_SPLIT}' utterance at speeds "
                        f"{' and '.join(map(str, SPEED_FACTORS))} (3x the training data; true/false)")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "compute_fbank")
    run_step(lambda: compute_fbank(args.manifest_dir, args.fbank_dir, args.corpus, args.splits.split(), args.nj,
                                   args.num_mel_bins, args.force, args.speed_perturb))


if __name__ == "__main__":
    main()
