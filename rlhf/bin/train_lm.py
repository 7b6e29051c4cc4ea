"""Estimate the word n-gram LM of a lang dir (or take a given ARPA) and compile it to G (steps/train_lm.sh).

Outputs (icefall's ``data/lm`` layout)::

    <lm_dir>/lm_<N>gram.arpa        interpolated Kneser-Ney from the training transcripts,
                                    or the --arpa file (e.g. LibriSpeech's published 3-gram), uncompressed
    <lm_dir>/G_<N>_gram.fst.txt     OpenFst text format over words.txt ids, backoff arcs on #0

With --arpa, n-grams with a word outside words.txt are dropped (kaldilm warns about the
first few): the decoding graph can only output words of the lexicon.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, add_stage_options, run_step
from rlhf.lang.train_lm import train_lm
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("lang_dir", type=Path, help="made by steps/prepare_lang.sh, e.g. data/lang_bpe_200")
    p.add_argument("lm_dir", type=Path, help="where the ARPA LM and G go, e.g. data/lm")
    p.add_argument("--order", type=int, default=3,
                   help="n-gram order of the word LM (with --arpa: the highest order kept)")
    p.add_argument("--arpa", type=Path, default=None,
                   help="compile this ARPA LM (.arpa or .arpa.gz) instead of estimating one from the transcripts")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "train_lm")
    run_step(lambda: train_lm(args.lang_dir, args.lm_dir, args.order, args.force, args.arpa))


if __name__ == "__main__":
    main()
