"""Lhotse manifests from the synthesized corpus directory (local/prepare_manifests.sh, stage 0).

Every utterance is checked before anything is written: its audio file must exist, be
readable and have the expected sample rate, and its transcript must not be empty.
Problems are reported together, each naming its file; manifests are written to
temporary names and renamed only when all splits succeeded.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, add_stage_options, run_step
from rlhf.corpus.prepare import prepare_manifests
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("corpus_dir", type=Path,
                   help="the synthesized corpus (local/synthesize_corpus.sh), e.g. download/synth")
    p.add_argument("output_dir", type=Path, help="where the manifests go, e.g. data/manifests")
    p.add_argument("--corpus-name", default="synth",
                   help="name prefix of the manifests: <output_dir>/<corpus-name>_recordings_<split>.jsonl.gz")
    p.add_argument("--sample-rate", type=int, default=16000,
                   help="the rate every audio file must have, in Hz (a file at another rate is an error)")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "prepare_manifests")
    run_step(lambda: prepare_manifests(args.corpus_dir, args.output_dir, args.corpus_name, args.sample_rate,
                                       args.force))


if __name__ == "__main__":
    main()
