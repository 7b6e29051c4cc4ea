"""Benchmark: Q-learning by the compiled kernel, the torch code and the plain Python per-arc loop
(local/bench_qlearning.sh).

Loads the stage-5 shards of a split into one FsaVec, computes the frame rewards, and times in
one process, on the same lattices:
- compiled: ``LatticeMdp.from_fsas`` + ``q_learning`` on CPU tensors (rlhf.rl.kernels), best of
  ``--repeats``; and its sweep alone, with the outputs already allocated;
- torch: the same with RLHF_SWEEPS=torch (the level-by-level code, the GPU path);
- k2's C++ tropical backward scores of the lattices scored by the rewards (V(s) with alpha =
  gamma = 1, no Q): the fastest lattice sweep k2 has for it;
- the seed's per-arc loop in plain Python (``rlhf.testing.qlearning_reference``), once;
- a numpy copy of the arc arrays the sweep streams through: the memory-bandwidth bound.
Checks that the values are identical and writes a table with the ratios and the load average.
"""

import argparse
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import k2
import numpy as np
import torch

from rlhf.benchmark import copy_seconds, load_average, load_lattices, timed, write_report
from rlhf.cli import HelpFormatter, add_dataclass_options, dataclass_from_args, run_step
from rlhf.k2_private import backward_scores
from rlhf.log import setup_logging
from rlhf.rl import kernels
from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.qlearning import QLearningConfig, q_learning
from rlhf.rl.rewards import frame_rewards
from rlhf.testing.qlearning_reference import q_learning_loop


def first_call_seconds() -> float:
    """The compiled path's first call in this process, on a one-arc lattice: numba's compilation
    (a fresh checkout) or its cache load."""
    fsas = k2.create_fsa_vec([k2.Fsa.from_str("0 1 -1 0\n1")])
    start = time.perf_counter()
    q_learning(LatticeMdp.from_fsas(fsas), torch.zeros(1))
    return time.perf_counter() - start


def sweep_alone(mdp: LatticeMdp, rewards: torch.Tensor, config: QLearningConfig, repeats: int) -> float:
    """Best seconds of the kernel alone, its outputs allocated and written once before."""
    q, v = np.empty(mdp.num_arcs), np.empty(mdp.num_states)
    finals = mdp.final[mdp.final >= 0].numpy()

    def reset() -> None:
        v.fill(-np.inf)
        v[finals] = 0.0
        q.fill(0.0)  # alpha < 1 starts from 0; with alpha = 1 the first sweep overwrites it

    arrays = [kernels.as_numpy(t) for t in (mdp.arc_splits, mdp.src, mdp.dest, rewards)]
    seconds, _ = timed(lambda: kernels.q_sweeps(*arrays, q, v, config.alpha, config.gamma, config.temperature,
                                                config.tolerance, config.max_sweeps, config.alpha == 1.0),
                       repeats, reset)
    return min(seconds)


def k2_backward_seconds(lattice: k2.Fsa, rewards: torch.Tensor, repeats: int) -> float:
    """Best seconds of k2's tropical backward scores (double) on a fresh Fsa (k2 caches them on one)."""
    fsas = []

    def fresh() -> None:
        fsas[:] = [k2.Fsa(lattice.arcs.clone())]
        fsas[0].scores = rewards.to(torch.float32)

    seconds, _ = timed(lambda: backward_scores(fsas[0], log_semiring=False), repeats, fresh)
    return min(seconds)


def benchmark(split_dir: Path, config: QLearningConfig, max_shards: Optional[int], repeats: int,
              threads: int) -> dict:
    torch.set_num_threads(threads)
    load_before = load_average()
    first_call = first_call_seconds()
    lattice, alignments = load_lattices(split_dir, max_shards)
    rewards = frame_rewards(lattice, alignments)
    runs = {}
    for choice in kernels.SWEEPS:
        with kernels.sweeps(choice):
            runs[choice] = timed(lambda: q_learning(LatticeMdp.from_fsas(lattice), rewards, config), repeats)
    (compiled_seconds, values), (torch_seconds, torch_values) = runs["auto"], runs["torch"]
    mdp = LatticeMdp.from_fsas(lattice)
    sweep_seconds = sweep_alone(mdp, rewards, config, repeats)
    k2_seconds = k2_backward_seconds(lattice, rewards, repeats)
    copy = copy_seconds([kernels.as_numpy(t) for t in (mdp.src, mdp.dest, rewards)], repeats)
    loop_seconds = loop_sweeps = loop_residual = loop_identical = None
    if config.temperature == 0.0:  # the plain loop knows the hard max only
        start = time.perf_counter()
        loop_q, loop_sweeps, loop_residual = q_learning_loop(lattice, rewards.tolist(), config)
        loop_seconds = time.perf_counter() - start
        loop_identical = values.q.tolist() == loop_q
    num_arcs, best = lattice.num_arcs, min(compiled_seconds)
    updates = num_arcs * values.sweeps  # arc updates: arcs times sweeps
    same_as_k2 = config.alpha == config.gamma == 1.0 and config.temperature == 0.0
    return {"split_dir": str(split_dir), "num_lattices": lattice.shape[0], "num_arcs": num_arcs,
            "config": asdict(config), "threads": threads, "cpu": platform.processor() or platform.machine(),
            "load_average": [load_before, load_average()], "first_call_seconds": first_call,
            "compiled_seconds": compiled_seconds, "sweep_seconds": sweep_seconds, "torch_seconds": torch_seconds,
            "k2_backward_seconds": k2_seconds, "loop_seconds": loop_seconds, "copy": copy,
            "compiled_updates_per_second": updates / best, "sweep_updates_per_second": updates / sweep_seconds,
            "torch_updates_per_second": updates / min(torch_seconds),
            "speedup_vs_loop": loop_seconds / best if loop_seconds else None,
            "speedup_vs_torch": min(torch_seconds) / best,
            "speedup_vs_k2": k2_seconds / best if same_as_k2 else None,
            "bound_fraction": {"call": values.sweeps * copy["fresh_seconds"] / best,
                               "sweep": values.sweeps * copy["warm_seconds"] / sweep_seconds},
            "identical_to_loop": loop_identical,
            "identical_to_torch": torch.equal(values.q, torch_values.q) and torch.equal(values.v, torch_values.v),
            "max_difference_to_torch": float((values.q - torch_values.q).nan_to_num(0.0).abs().max()),
            "sweeps": [values.sweeps, torch_values.sweeps, loop_sweeps],
            "residual": [values.residual, torch_values.residual, loop_residual]}


def table(r: dict) -> str:
    c, n = r["config"], r["num_arcs"]
    loop = r["loop_seconds"]
    same = "identical" if r["identical_to_torch"] else f"max difference {r['max_difference_to_torch']:.1e}"
    loop_row = (f"| plain Python per-arc loop (rlhf.testing.qlearning_reference) | {loop:.2f} | "
                f"{n * r['sweeps'][2] / loop:.3g} | "
                f"1x | {r['sweeps'][2]} | reference |" if loop else
                "| plain Python per-arc loop | - | - | - | - | not run: it has no soft max |")
    versus_loop = (f"{r['speedup_vs_loop']:.0f}x the plain loop (target 100x; values "
                   f"{'identical' if r['identical_to_loop'] else 'DIFFERENT'}), " if loop else "")
    versus_k2 = f", {r['speedup_vs_k2']:.1f}x k2's backward pass" if r["speedup_vs_k2"] else ""
    copy = r["copy"]

    def vs_loop(seconds: float) -> str:
        return f"{loop / seconds:.0f}x" if loop else "-"

    return "\n".join([
        f"Q-learning on {r['num_lattices']} lattices ({n} arcs) of {r['split_dir']}, frame reward, alpha "
        f"{c['alpha']}, gamma {c['gamma']}, temperature {c['temperature']}; {r['threads']} thread(s); load average "
        f"{r['load_average'][0]:.2f} before, {r['load_average'][1]:.2f} after (2 cores).", "",
        "| implementation | seconds | arc updates/s | vs plain loop | sweeps | values |", "|---|---|---|---|---|---|",
        f"| compiled (numba): `LatticeMdp.from_fsas` + `q_learning`, best of {len(r['compiled_seconds'])} "
        f"| {min(r['compiled_seconds']):.4f} | {r['compiled_updates_per_second']:.3g} | "
        f"{vs_loop(min(r['compiled_seconds']))} | {r['sweeps'][0]} | {same} to torch |",
        f"| compiled: the sweep alone (outputs allocated before) | {r['sweep_seconds']:.4f} | "
        f"{r['sweep_updates_per_second']:.3g} | {vs_loop(r['sweep_seconds'])} | | |",
        f"| torch, level by level (`RLHF_SWEEPS=torch`) | {min(r['torch_seconds']):.4f} | "
        f"{r['torch_updates_per_second']:.3g} | {vs_loop(min(r['torch_seconds']))} | "
        f"{r['sweeps'][1]} | |",
        f"| k2 C++ tropical backward scores (double), V only | {r['k2_backward_seconds']:.4f} | "
        f"{n / r['k2_backward_seconds']:.3g} | {vs_loop(r['k2_backward_seconds'])} | 1 | "
        f"{'' if r['speedup_vs_k2'] else 'another computation: alpha = gamma = 1, hard max'} |",
        loop_row, "",
        f"Compiled: {versus_loop}{r['speedup_vs_torch']:.1f}x the torch code{versus_k2}. Memory-bandwidth "
        f"bound: a numpy copy of the arc arrays (src, dest, rewards; {copy['bytes'] / 1e6:.0f} MB) takes "
        f"{copy['fresh_seconds'] * 1e3:.1f} ms into new arrays, {copy['warm_seconds'] * 1e3:.1f} ms into written "
        f"ones, a pass; over {r['sweeps'][0]} pass(es) the call reaches "
        f"{100 * r['bound_fraction']['call']:.0f}% of the first, the sweep alone "
        f"{100 * r['bound_fraction']['sweep']:.0f}% of the second. First compiled call in the process "
        f"(compilation, or numba's cache load): {r['first_call_seconds']:.2f} s.", ""])


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("split_dir", type=Path, help="a split's lattice shards, e.g. exp/ctc_tdnn/lattices/train")
    p.add_argument("--max-shards", type=int, default=None, help="use the first N shards only (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="runs of each fast implementation; the fastest counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the kernels use one)")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the table to this file, and its numbers to a .json beside it")
    add_dataclass_options(p, QLearningConfig())
    args = p.parse_args(argv)
    setup_logging(None, "bench-qlearning")
    config = dataclass_from_args(QLearningConfig, args)

    def step() -> None:
        result = benchmark(args.split_dir, config, args.max_shards, args.repeats, args.threads)
        write_report(args.out, table(result), result)
        if result["identical_to_loop"] is False or (config.temperature == 0.0 and not result["identical_to_torch"]):
            logging.error("the compiled values differ from the plain loop's or the torch code's")
            raise SystemExit(1)

    run_step(step)


if __name__ == "__main__":
    main()
