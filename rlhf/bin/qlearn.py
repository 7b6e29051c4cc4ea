"""Q-learning over the stage-5 lattices (steps/qlearn.sh, stage 6).

For every shard of every split, runs the tabular Q-learning of rlhf.rl over all its lattices
at once and writes, beside the lattices, ``<split>/q-<reward>/shard-NNNNN.pt``: per lattice
arc ``q``, ``v_src``, ``advantage``, ``best_return`` (float32, in the shard's arc order), and
per lattice ``start_value`` and ``valid``. ``<exp_dir>/qlearn-<reward>.md`` is the summary
table: lattice oracle WER against 1-best WER, the share of utterances whose greedy-Q path
differs from the 1-best, the mean advantage of the 1-best path, sweeps and residual to
convergence, and Q-learning throughput in arcs per second.
"""

import argparse
from pathlib import Path
from typing import Optional

from torch.distributed.elastic.multiprocessing.errors import record

from rlhf import distributed
from rlhf.cli import (HelpFormatter, add_dataclass_options, add_distributed_options, add_stage_options,
                      dataclass_from_args, run_step)
from rlhf.log import setup_logging
from rlhf.qlearn import qlearn
from rlhf.rl.qlearning import QLearningConfig
from rlhf.rl.values import REWARD_MODES


@record
def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("exp_dir", type=Path, help="the model's directory, with lattices/ from stage 5, e.g. exp/ctc_tdnn")
    p.add_argument("--splits", default="train dev", help="the splits whose lattices to run over, space-separated")
    p.add_argument("--reward", default="frame", choices=REWARD_MODES,
                   help="frame: agreement with the reference's forced alignment per frame (sMBR); "
                        "edit: minus the edit distance, via the product with the reference's Levenshtein automaton")
    add_dataclass_options(p, QLearningConfig())
    add_stage_options(p, "<exp_dir>/log")
    add_distributed_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "qlearn")
    config = dataclass_from_args(QLearningConfig, args)

    def step() -> None:
        table = qlearn(args.exp_dir, args.splits.split(), args.reward, config, args.force)
        if distributed.context().is_main:
            print(table.read_text())

    run_step(step, args.dist_timeout, "cpu")


if __name__ == "__main__":
    main()
