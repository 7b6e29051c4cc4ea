"""Estimate the word n-gram LM of a lang dir and compile it to a G FST with kaldilm.

Outputs (icefall's ``data/lm`` layout)::

    <lm_dir>/lm_<N>gram.arpa        interpolated Kneser-Ney, from the training transcripts
    <lm_dir>/G_<N>_gram.fst.txt     OpenFst text format over words.txt ids, backoff arcs on #0
"""

import argparse
import logging
from pathlib import Path
from typing import Optional

import kaldilm

from rlhf.lang.ngram import estimate_kneser_ney
from rlhf.lang.prepare_lang import UNK_WORD
from rlhf.cli import add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.stage import StageMarker, atomic_output


def train_lm(lang_dir: Path, lm_dir: Path, order: int, force: bool = False) -> None:
    transcripts, words_txt = lang_dir / "transcript_words.txt", lang_dir / "words.txt"
    marker = StageMarker(lm_dir, f"train_lm_{order}gram", {"order": order}, [transcripts, words_txt])
    if marker.skip_if_complete(force):
        return
    with open(transcripts, encoding="utf-8") as f:
        lm = estimate_kneser_ney((line.split() for line in f), order=order, vocab=[UNK_WORD])
    lm_dir.mkdir(parents=True, exist_ok=True)
    arpa = lm_dir / f"lm_{order}gram.arpa"
    lm.write_arpa(arpa)
    logging.info("Wrote %s: n-grams per order %s", arpa, lm.num_ngrams())
    with atomic_output(lm_dir / f"G_{order}_gram.fst.txt") as tmp:
        fst_text = kaldilm.arpa2fst(input_arpa=str(arpa), disambig_symbol="#0", read_symbol_table=str(words_txt),
                                    max_order=order)
        tmp.write_text(fst_text)
    logging.info("Wrote %s (%d arcs and final states)", lm_dir / f"G_{order}_gram.fst.txt", fst_text.count("\n"))
    marker.write()


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("lang_dir", type=Path, help="made by rlhf-prepare-lang, e.g. data/lang_bpe_200")
    p.add_argument("lm_dir", type=Path, help="e.g. data/lm")
    p.add_argument("--order", type=int, default=3)
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "train_lm")
    run_step(lambda: train_lm(args.lang_dir, args.lm_dir, args.order, args.force))


if __name__ == "__main__":
    main()
