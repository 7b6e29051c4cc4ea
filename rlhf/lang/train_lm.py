"""The word n-gram LM of a lang dir (estimated, or a given ARPA) compiled to a G FST with kaldilm.
"""

import gzip
import logging
import shutil
from pathlib import Path
from typing import Optional

import kaldilm

from rlhf.lang.ngram import estimate_kneser_ney
from rlhf.lang.prepare_lang import UNK_WORD
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
