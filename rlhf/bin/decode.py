"""Decode with a trained CTC model and score (steps/decode.sh, stage 4).

Methods:
  ctc-greedy   best token per frame, no search
  ctc-1best    shortest path of a k2 lattice over the CTC topology of the tokens (no LM)
  hlg-1best    shortest path of a k2 lattice over HLG (lexicon and word n-gram LM)

For each method and split, ``<exp_dir>/<method>/`` gets icefall's ``recogs-<split>-<suffix>.txt``,
``errs-<split>-<suffix>.txt`` and ``wer-summary-<split>-<suffix>.txt``; lattice methods also get
``nbest-<split>-<suffix>.txt`` (n-best lists drawn from the lattice) and
``lattice-stats-<split>-<suffix>.json`` (arcs per frame, n-best oracle WER, empty lattices).
``<exp_dir>/results-<suffix>.md`` is the table of every method, split and statistic.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import (HelpFormatter, add_dataclass_options, add_inference_options, add_model_dirs, add_stage_options,
                      check_positive, dataclass_from_args, run_step)
from rlhf.decode import METHODS, LatticeConfig, decode
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_dirs(p)
    p.add_argument("--splits", default="dev test", help="the splits to decode, space-separated")
    add_inference_options(p, epoch_required=False)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="decode this checkpoint file (e.g. a fine-tuned best.pt) instead of --epoch/--avg")
    p.add_argument("--methods", default=" ".join(METHODS),
                   help=f"decoding methods, space-separated, among {', '.join(METHODS)}")
    add_dataclass_options(p, LatticeConfig())
    add_stage_options(p, "<exp_dir>/log")
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "decode")
    config = dataclass_from_args(LatticeConfig, args)

    if args.checkpoint is None and args.epoch is None:
        p.error("give --epoch (and --avg) or --checkpoint")

    def step() -> None:
        check_positive(args, "max_duration")
        table = decode(args.lang_dir, args.fbank_dir, args.exp_dir, args.corpus, args.splits.split(), args.epoch,
                       args.avg, args.methods.split(), config, args.max_duration, args.device, args.force,
                       args.checkpoint)
        print(table.read_text())

    run_step(step)


if __name__ == "__main__":
    main()
