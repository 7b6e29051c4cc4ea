"""Benchmark: the lattice sweeps of stage 7's objective, compiled kernels against the torch code
(local/bench_objective.sh).

Loads the stage-5 lattices of a split, cuts them into stage 7's batches (``--batch-frames``)
and takes the share one Hessian-free iteration's gradient visits (``--grad-fraction``, drawn
with ``--seed``). Arc weights are the lattices' own scores (float32, as the re-scored weights
are), advantages the frame reward's (Q-learning on the forced alignments). In one process,
with the compiled kernels and with the torch code (RLHF_SWEEPS=torch), best of ``--repeats``:

- frame reward: J = sum_a gamma(a) A(a) and its gradient (``expected_advantage`` forward and
  backward), what the gradient of an HF iteration spends in lattices;
- edit reward: the arc posteriors and ``--num-paths`` sampled paths per lattice
  (``SequenceObjective.draw_paths`` without the edit distances);
- the arc posteriors alone, and k2's own ``get_arc_post`` and ``random_paths`` on the same
  batches (what the kernels would have to beat to be left out).

The network's forward and backward passes, which the kernels do not change, are not included.
Checks that the values agree (the sampled paths identical) and writes a table with the ratios
and the load average.
"""

import argparse
import logging
import math
import platform
import random
from pathlib import Path
from typing import Optional

import k2
import torch

from rlhf.benchmark import load_average, load_lattices, timed, write_report
from rlhf.cli import HelpFormatter, run_step
from rlhf.lattice_batches import length_batches
from rlhf.log import setup_logging
from rlhf.rl import kernels
from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.objective import expected_advantage, posteriors, sample_paths
from rlhf.rl.qlearning import q_learning
from rlhf.rl.rewards import frame_rewards


def hf_batches(lattice: k2.Fsa, alignments: list[torch.Tensor], batch_frames: int, grad_fraction: float,
               seed: int) -> list[tuple[LatticeMdp, torch.Tensor, torch.Tensor]]:
    """(mdp, weights, advantages) of the batches one HF iteration's gradient visits."""
    num_frames = [a.numel() for a in alignments]
    batches = length_batches(num_frames, range(len(num_frames)), batch_frames)
    chosen = random.Random(seed).sample(batches, max(1, math.ceil(grad_fraction * len(batches))))
    out = []
    for utts in chosen:
        fsas = k2.index_fsa(lattice, torch.tensor(utts, dtype=torch.int32))
        mdp = LatticeMdp.from_fsas(fsas)
        values = q_learning(mdp, frame_rewards(fsas, [alignments[u] for u in utts]))
        advantage = values.advantage(mdp)
        out.append((mdp, fsas.scores.detach().clone(), torch.where(torch.isfinite(advantage), advantage, 0.0)))
    return out


def frame_gradient(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per batch, J and dJ/dw, as stage 7's gradient computes them."""
    out = []
    for mdp, weights, advantage in batches:
        w = weights.clone().requires_grad_(True)
        j = expected_advantage(w, mdp, advantage)
        j.sum().backward()
        out.append((j.detach(), w.grad))
    return out


def edit_paths(batches, num_paths: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per batch, the sampled paths' arcs and path ids, as stage 7's draw_paths samples them."""
    out = []
    for i, (mdp, weights, _) in enumerate(batches):
        arcs, paths, _ = sample_paths(mdp, posteriors(mdp, weights), weights, num_paths,
                                      torch.Generator().manual_seed(seed + i))
        out.append((arcs, paths))
    return out


def k2_arc_post(batches) -> None:
    for mdp, weights, _ in batches:
        fsas = k2.Fsa(mdp.fsas.arcs.clone())  # a fresh Fsa: k2 caches its scores on one
        fsas.scores = weights
        fsas.get_arc_post(use_double_scores=True, log_semiring=True)


def k2_random_paths(batches, num_paths: int) -> None:
    for mdp, weights, _ in batches:
        fsas = k2.Fsa(mdp.fsas.arcs.clone())
        fsas.scores = weights
        k2.random_paths(fsas, use_double_scores=True, num_paths=num_paths)


def benchmark(split_dir: Path, max_shards: Optional[int], batch_frames: int, grad_fraction: float, num_paths: int,
              seed: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    load_before = load_average()
    lattice, alignments = load_lattices(split_dir, max_shards)
    batches = hf_batches(lattice, alignments, batch_frames, grad_fraction, seed)
    sweeps = {"frame": lambda: frame_gradient(batches), "edit": lambda: edit_paths(batches, num_paths, seed),
              "posteriors": lambda: [posteriors(mdp, w) for mdp, w, _ in batches]}
    seconds, results = {}, {}
    for choice in kernels.SWEEPS:
        with kernels.sweeps(choice):
            for name, fn in sweeps.items():
                seconds[f"{name}_{choice}"], results[f"{name}_{choice}"] = timed(fn, repeats)
    seconds["k2_arc_post"], _ = timed(lambda: k2_arc_post(batches), repeats)
    seconds["k2_random_paths"], _ = timed(lambda: k2_random_paths(batches, num_paths), repeats)
    j_diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(results["frame_auto"], results["frame_torch"]))
    grad_scale = max(float(b[1].abs().max()) for b in results["frame_torch"])
    grad_diff = max(float((a[1] - b[1]).abs().max()) for a, b in zip(results["frame_auto"], results["frame_torch"]))
    post_diff = max(float((a.occupancy - b.occupancy).abs().max())
                    for a, b in zip(results["posteriors_auto"], results["posteriors_torch"]))
    same_paths = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                     for a, b in zip(results["edit_auto"], results["edit_torch"]))
    best = {name: min(s) for name, s in seconds.items()}
    return {"split_dir": str(split_dir), "num_batches": len(batches),
            "num_lattices": sum(m.num_fsas for m, _, _ in batches),
            "num_arcs": sum(m.num_arcs for m, _, _ in batches), "batch_frames": batch_frames,
            "grad_fraction": grad_fraction, "num_paths": num_paths, "seed": seed, "threads": threads,
            "cpu": platform.processor() or platform.machine(), "load_average": [load_before, load_average()],
            "seconds": seconds, "best": best,
            "speedup": {name: best[f"{name}_torch"] / best[f"{name}_auto"] for name in sweeps},
            "max_difference": {"objective": j_diff, "gradient": grad_diff, "gradient_scale": grad_scale,
                               "occupancy": post_diff},
            "identical_paths": same_paths}


def table(r: dict) -> str:
    b, s, d = r["best"], r["speedup"], r["max_difference"]
    rows = [("frame reward: J and its gradient (`expected_advantage` forward + backward)", "frame",
             f"J within {d['objective']:.1e}, gradient within {d['gradient']:.1e} (float32; largest "
             f"{d['gradient_scale']:.2g})"),
            (f"edit reward: arc posteriors + {r['num_paths']} sampled paths per lattice", "edit",
             "identical paths" if r["identical_paths"] else "DIFFERENT paths"),
            ("arc posteriors alone (torch: k2's forward/backward scores)", "posteriors",
             f"occupancies within {d['occupancy']:.1e}")]
    lines = [f"Stage 7's lattice sweeps in one Hessian-free iteration's gradient: {r['num_batches']} batches "
             f"({r['num_lattices']} lattices, {r['num_arcs']} arcs; --batch-frames {r['batch_frames']}, "
             f"--grad-fraction {r['grad_fraction']}) of {r['split_dir']}; best of {len(r['seconds']['frame_auto'])}; "
             f"{r['threads']} thread(s); load average {r['load_average'][0]:.2f} before, "
             f"{r['load_average'][1]:.2f} after (2 cores). Network passes not included.", "",
             "| sweep | torch (before) | compiled (after) | speed-up | values |", "|---|---|---|---|---|"]
    for label, name, values in rows:
        lines.append(f"| {label} | {b[f'{name}_torch']:.3f} s | {b[f'{name}_auto']:.3f} s | {s[name]:.1f}x | "
                     f"{values} |")
    lines += [f"| k2's `get_arc_post` (log semiring, double), for comparison | {b['k2_arc_post']:.3f} s | | | |",
              f"| k2's `random_paths` ({r['num_paths']} per lattice), for comparison | {b['k2_random_paths']:.3f} s "
              f"| | | |", ""]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("split_dir", type=Path, help="a split's lattice shards, e.g. exp/ctc_tdnn/lattices/train")
    p.add_argument("--max-shards", type=int, default=None, help="use the first N shards only (default: all)")
    p.add_argument("--batch-frames", type=int, default=12000,
                   help="padded output frames per batch, as stage 7's --batch-frames")
    p.add_argument("--grad-fraction", type=float, default=0.25,
                   help="share of the batches one HF gradient visits, as stage 7's --grad-fraction")
    p.add_argument("--num-paths", type=int, default=8, help="paths sampled per lattice, as stage 7's --num-paths")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch draw and the sampled paths")
    p.add_argument("--repeats", type=int, default=3, help="runs of each implementation; the fastest counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the kernels use one)")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the table to this file, and its numbers to a .json beside it")
    args = p.parse_args(argv)
    setup_logging(None, "bench-objective")

    def step() -> None:
        result = benchmark(args.split_dir, args.max_shards, args.batch_frames, args.grad_fraction, args.num_paths,
                           args.seed, args.repeats, args.threads)
        write_report(args.out, table(result), result)
        d = result["max_difference"]
        if not result["identical_paths"] or d["objective"] > 1e-9 or d["occupancy"] > 1e-12:
            logging.error("the compiled values differ from the torch code's")
            raise SystemExit(1)

    run_step(step)


if __name__ == "__main__":
    main()
