"""Benchmark: vectorized Q-learning against the plain Python per-arc loop (local/bench_qlearning.sh).

Loads the stage-5 shards of a split into one FsaVec, computes the frame rewards, and times
(a) ``LatticeMdp.from_fsas`` + ``q_learning`` (best of ``--repeats`` runs) and (b) the seed's
per-arc loop in plain Python (``rlhf.testing.qlearning_reference``) on the same lattices, in one
process. Both include their own set-up. Checks that the values are identical and writes a table.
"""

import argparse
import json
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import k2
import torch

from rlhf.cli import HelpFormatter, add_dataclass_options, dataclass_from_args, run_step
from rlhf.lattice_shards import LatticeShard, shard_paths
from rlhf.log import setup_logging
from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.qlearning import QLearningConfig, q_learning
from rlhf.rl.rewards import frame_rewards
from rlhf.stage import atomic_output
from rlhf.testing.qlearning_reference import q_learning_loop


def load_lattices(split_dir: Path, max_shards: Optional[int]) -> tuple[k2.Fsa, list[torch.Tensor]]:
    """The shards' lattices as one FsaVec, with their forced alignments."""
    shards = [LatticeShard.load(p) for p in shard_paths(split_dir)[:max_shards]]
    return k2.cat([s.lattice for s in shards]), [a for s in shards for a in s.alignments]


def benchmark(split_dir: Path, config: QLearningConfig, max_shards: Optional[int], repeats: int,
              threads: int) -> dict:
    torch.set_num_threads(threads)
    lattice, alignments = load_lattices(split_dir, max_shards)
    rewards = frame_rewards(lattice, alignments)
    vectorized = []
    for _ in range(repeats):
        start = time.perf_counter()
        values = q_learning(LatticeMdp.from_fsas(lattice), rewards, config)
        vectorized.append(time.perf_counter() - start)
    reward_list = rewards.tolist()
    start = time.perf_counter()
    loop_q, loop_sweeps, loop_residual = q_learning_loop(lattice, reward_list, config)
    loop_seconds = time.perf_counter() - start
    identical = values.q.tolist() == loop_q
    num_arcs = lattice.num_arcs
    best = min(vectorized)
    return {"split_dir": str(split_dir), "num_lattices": lattice.shape[0], "num_arcs": num_arcs,
            "config": asdict(config), "threads": threads, "cpu": platform.processor() or platform.machine(),
            "vectorized_seconds": vectorized, "vectorized_arcs_per_second": num_arcs / best,
            "loop_seconds": loop_seconds, "loop_arcs_per_second": num_arcs / loop_seconds,
            "speedup": loop_seconds / best, "identical": identical,
            "sweeps": [values.sweeps, loop_sweeps], "residual": [values.residual, loop_residual]}


def table(r: dict) -> str:
    c = r["config"]
    return "\n".join([
        f"Q-learning throughput on {r['num_lattices']} lattices ({r['num_arcs']} arcs) of {r['split_dir']}, "
        f"frame reward, alpha {c['alpha']}, gamma {c['gamma']}; {r['threads']} torch thread(s).", "",
        "| implementation | seconds | arcs/s | sweeps | values |", "|---|---|---|---|---|",
        f"| vectorized (rlhf.rl.q_learning, best of {len(r['vectorized_seconds'])}) | {min(r['vectorized_seconds']):.3f} "
        f"| {r['vectorized_arcs_per_second']:.3g} | {r['sweeps'][0]} | "
        f"{'identical' if r['identical'] else 'DIFFERENT'} |",
        f"| plain Python per-arc loop (rlhf.testing.qlearning_reference) | {r['loop_seconds']:.2f} "
        f"| {r['loop_arcs_per_second']:.3g} | {r['sweeps'][1]} | reference |", "",
        f"Speed-up: {r['speedup']:.0f}x (target: 100x).", ""])


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("split_dir", type=Path, help="a split's lattice shards, e.g. exp/ctc_tdnn/lattices/train")
    p.add_argument("--max-shards", type=int, default=None, help="use the first N shards only (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="runs of the vectorized code; the fastest counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the vectorized code")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the table to this file, and its numbers to a .json beside it")
    add_dataclass_options(p, QLearningConfig())
    args = p.parse_args(argv)
    setup_logging(None, "bench-qlearning")
    config = dataclass_from_args(QLearningConfig, args)

    def step() -> None:
        result = benchmark(args.split_dir, config, args.max_shards, args.repeats, args.threads)
        text = table(result)
        if args.out is not None:
            with atomic_output(args.out) as tmp:
                tmp.write_text(text)
            with atomic_output(args.out.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(text)
        if not result["identical"]:
            logging.error("the vectorized values differ from the plain loop's")
            raise SystemExit(1)

    run_step(step)


if __name__ == "__main__":
    main()
