"""Decode the training data (and dev) into k2 lattices for sequence training (steps/make_lattices.sh, stage 5).

For each split, ``<exp_dir>/lattices/<split>/`` gets ``shard-NNNNN.pt`` files (see
rlhf/lattice_shards.py: lattices with each arc's frame index and graph score, references,
forced alignments) and ``stats.json``. Reported per shard and overall: arcs per frame, the
exact lattice oracle WER (best path of the product with the reference's Levenshtein
automaton) against the 1-best WER, utterances skipped (an empty lattice, a reference that
cannot be aligned: counted, not fatal) and throughput in frames per second.

A shard is ``--shard-size`` consecutive cuts of the manifest. Run as several processes
(``steps/make_lattices.sh --world-size N``), each rank decodes every N-th shard; the shards are
the same files whatever N is. Speed-perturbed training copies (stage 2's ``--speed-perturb``)
get no lattices: sequence training runs on the original audio.
"""

import argparse
from pathlib import Path
from typing import Optional

from torch.distributed.elastic.multiprocessing.errors import record

from rlhf import distributed
from rlhf.cli import (HelpFormatter, add_dataclass_options, add_distributed_options, add_inference_options,
                      add_model_dirs, add_stage_options, check_positive, dataclass_from_args, run_step)
from rlhf.decode import LatticeConfig
from rlhf.log import setup_logging
from rlhf.make_lattices import GRAPHS, make_lattices


@record
def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_dirs(p)
    p.add_argument("--splits", default="train dev", help="the splits to decode into lattices, space-separated")
    add_inference_options(p)
    p.add_argument("--graph", default="hlg", choices=GRAPHS,
                   help="decoding graph: hlg (words; lexicon and LM) or ctc (tokens; no LM)")
    p.add_argument("--hlg", type=Path, default=None,
                   help="the HLG of --graph hlg (default: <lang_dir>/HLG.pt, stage 4's); one from a weaker LM "
                        "(steps/compile_hlg.sh --out) gives lattices with more errors to learn from")
    p.add_argument("--shard-size", type=int, default=500,
                   help="cuts per shard file (the unit of work of a rank; the shards do not depend on --world-size)")
    p.add_argument("--max-utts", type=int, default=None, help="only the first N cuts of each split (default: all)")
    add_dataclass_options(p, LatticeConfig())
    add_stage_options(p, "<exp_dir>/log")
    add_distributed_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "make-lattices")
    config = dataclass_from_args(LatticeConfig, args)

    def step() -> None:
        check_positive(args, "max_duration", "shard_size")
        out = make_lattices(args.lang_dir, args.fbank_dir, args.exp_dir, args.corpus, args.splits.split(), args.epoch,
                            args.avg, args.graph, config, args.shard_size, args.max_duration, args.max_utts,
                            args.device, args.force, args.hlg)
        if distributed.context().is_main:
            print((out / "stats.json").read_text())

    run_step(step, args.dist_timeout, args.device)


if __name__ == "__main__":
    main()
