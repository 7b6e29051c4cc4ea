"""Build ``data/lang_bpe_<N>``: a sentencepiece model and the k2/icefall lang files (steps/prepare_lang.sh).

Outputs (icefall's names and formats)::

    bpe.model            sentencepiece model trained on the training transcripts
                         (absent with --model-type word: each word is one token)
    tokens.txt           <piece> <id>; id 0 is the CTC blank <blk>
    words.txt            <word> <id>; <eps> 0, <UNK>, the words, then #0 <s> </s>
    lexicon.txt          <word> <piece> <piece> ...  (each word's BPE segmentation)
    transcript_words.txt the training transcripts, one per line
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, add_stage_options, run_step
from rlhf.lang.prepare_lang import prepare_lang
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("supervisions", type=Path,
                   help="the training supervisions, e.g. data/manifests/synth_supervisions_train.jsonl.gz")
    p.add_argument("lang_dir", type=Path, help="where the lang files go, e.g. data/lang_bpe_200")
    p.add_argument("--vocab-size", type=int, default=200,
                   help="tokens of the sentencepiece model, the CTC blank included (not used with --model-type word)")
    p.add_argument("--model-type", choices=["bpe", "unigram", "char", "word"], default="bpe",
                   help="sentencepiece model type, or word: one token per word (tiny vocabularies like yesno)")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "prepare_lang")
    run_step(lambda: prepare_lang(args.supervisions, args.lang_dir, args.vocab_size, args.model_type, args.force))


if __name__ == "__main__":
    main()
