"""Estimate the word n-gram LM of a lang dir (or take a given ARPA) and compile it to a G FST with kaldilm.

Outputs (icefall's ``data/lm`` layout)::

    <lm_dir>/lm_<N>gram.arpa        interpolated Kneser-Ney from the training transcripts,
                                    or the --arpa file (e.g. LibriSpeech's published 3-gram), uncompressed
    <lm_dir>/G_<N>_gram.fst.txt     OpenFst text format over words.txt ids, backoff arcs on #0

With --arpa, n-grams with a word outside words.txt are dropped (kaldilm warns about the
first few): the decoding graph can only output words of the lexicon.
"""

import argparse
import gzip
import logging
import shutil
from pathlib import Path
from typing import Optional

import kaldilm

from rlhf.lang.ngram import estimate_kneser_ney
from rlhf.lang.prepare_lang import UNK_WORD
from rlhf.cli import add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.stage import StageMarker, atomic_output


def train_lm(lang_dir: Path, lm_dir: Path, order: int, force: bool = False, arpa: Optional[Path] = None) -> None:
    """Write the ARPA LM (estimated, or copied from ``arpa``, .gz or not) and its G FST."""
    transcripts, words_txt = lang_dir / "transcript_words.txt", lang_dir / "words.txt"
    if arpa is not None and not arpa.is_file():
        raise FileNotFoundError(f"--arpa {arpa} not found")
    inputs = [words_txt] + ([arpa] if arpa is not None else [transcripts])
    options = {"order": order, **({"given_arpa": True} if arpa is not None else {})}
    marker = StageMarker(lm_dir, f"train_lm_{order}gram", options, inputs)
    if marker.skip_if_complete(force):
        return
    lm_dir.mkdir(parents=True, exist_ok=True)
    out_arpa = lm_dir / f"lm_{order}gram.arpa"
    if arpa is None:
        with open(transcripts, encoding="utf-8") as f:
            lm = estimate_kneser_ney((line.split() for line in f), order=order, vocab=[UNK_WORD])
        lm.write_arpa(out_arpa)
        logging.info("Wrote %s: n-grams per order %s", out_arpa, lm.num_ngrams())
    else:
        with (gzip.open if arpa.name.endswith(".gz") else open)(arpa, "rb") as src, atomic_output(out_arpa) as tmp:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        logging.info("Wrote %s from %s", out_arpa, arpa)
    with atomic_output(lm_dir / f"G_{order}_gram.fst.txt") as tmp:
        fst_text = kaldilm.arpa2fst(input_arpa=str(out_arpa), disambig_symbol="#0", read_symbol_table=str(words_txt),
                                    max_order=order)
        if not fst_text.strip():
            raise ValueError(f"kaldilm made an empty G from {out_arpa}: is it an ARPA file over the words of "
                             f"{words_txt}?")
        tmp.write_text(fst_text)
    logging.info("Wrote %s (%d arcs and final states)", lm_dir / f"G_{order}_gram.fst.txt", fst_text.count("\n"))
    marker.write()


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("lang_dir", type=Path, help="made by rlhf-prepare-lang, e.g. data/lang_bpe_200")
    p.add_argument("lm_dir", type=Path, help="e.g. data/lm")
    p.add_argument("--order", type=int, default=3, help="n-gram order (with --arpa: the highest order used)")
    p.add_argument("--arpa", type=Path, default=None,
                   help="compile this ARPA LM (.arpa or .arpa.gz) instead of estimating one from the transcripts")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "train_lm")
    run_step(lambda: train_lm(args.lang_dir, args.lm_dir, args.order, args.force, args.arpa))


if __name__ == "__main__":
    main()
