"""Stage 6 over lattice shards: per-arc values from rlhf.rl saved beside the lattices, and the
summary statistics (1-best against greedy-Q paths, advantages, throughput).
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import k2
import torch

from rlhf import distributed
from rlhf.decode import arc_labels
from rlhf.lattice_shards import LatticeShard, shard_paths
from rlhf.rl.mdp import arc_fsa_index, first_arcs
from rlhf.rl.qlearning import QLearningConfig
from rlhf.rl.rewards import edit_distance
from rlhf.rl.values import REWARD_MODES, LatticeValues, lattice_values
from rlhf.stage import StageMarker, atomic_output, record_timings, save_torch


@dataclass
class QLearningStats:
    num_utts: int = 0
    num_invalid: int = 0           # lattices without a complete path (none from stage 5)
    num_lattice_arcs: int = 0
    num_mdp_arcs: int = 0          # arcs Q-learning ran over (the product's in edit mode)
    greedy_differs: int = 0        # utterances whose greedy-Q path outputs other words than the 1-best
    onebest_advantage: float = 0.0  # sum over utterances of the 1-best path's advantage
    max_sweeps: int = 0
    max_residual: float = 0.0
    seconds: float = 0.0           # Q-learning time (loading and saving excluded)

    def add(self, other: "QLearningStats") -> None:
        for name, value in asdict(other).items():
            if name.startswith("max_"):
                setattr(self, name, max(getattr(self, name), value))
            else:
                setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict:
        """The counts of qlearn-<reward>.json (no timing: see ``timing``)."""
        counts = {k: v for k, v in asdict(self).items() if k != "seconds"}
        return {**counts,
                "greedy_differs_pct": 100.0 * self.greedy_differs / max(self.num_utts, 1),
                "mean_onebest_advantage": self.onebest_advantage / max(self.num_utts, 1)}

    def timing(self) -> dict:
        """What timings.json keeps of it."""
        return {"seconds": self.seconds, "arcs_per_second": self.num_mdp_arcs / max(self.seconds, 1e-9),
                "lattice_arcs_per_second": self.num_lattice_arcs / max(self.seconds, 1e-9)}


def onebest_arcs(lattice: k2.Fsa) -> list[list[int]]:
    """Per lattice, its arcs (indices within the lattice) on the best-scoring path."""
    marked = k2.Fsa(lattice.arcs.clone())
    marked.scores = lattice.scores.detach().clone()
    starts = first_arcs(lattice)
    index = torch.arange(lattice.num_arcs, device=lattice.device) - starts[:-1].index_select(0, arc_fsa_index(lattice))
    marked.local_arc = index.to(torch.int32)
    best = k2.shortest_path(marked, use_double_scores=True)
    splits = first_arcs(best).tolist()
    local = best.local_arc.tolist()
    return [local[splits[i]:splits[i + 1]] for i in range(best.shape[0])]


def shard_stats(shard: LatticeShard, values: LatticeValues, seconds: float) -> QLearningStats:
    """The summary counts of one shard's Q-learning."""
    stats = QLearningStats(num_utts=len(shard.cut_ids), num_invalid=int((~values.valid).sum()),
                           num_lattice_arcs=shard.lattice.num_arcs, num_mdp_arcs=values.mdp_fsas.num_arcs,
                           max_sweeps=values.sweeps, max_residual=values.residual, seconds=seconds)
    outputs = arc_labels(shard.lattice).tolist()
    starts = first_arcs(shard.lattice).tolist()
    advantage = values.advantage.tolist()
    for i, best in enumerate(onebest_arcs(shard.lattice)):
        words = [w for a in best for w in outputs[starts[i] + a]]
        greedy = [w for a in values.greedy_arcs[i] for w in outputs[starts[i] + a]]
        stats.greedy_differs += int(words != greedy)
        if values.mode == "frame":  # additive reward: the advantages along the path telescope
            stats.onebest_advantage += sum(advantage[starts[i] + a] for a in best)
        else:  # the edit reward belongs to the whole path: R(1-best) - V(start)
            stats.onebest_advantage += -edit_distance(words, shard.references[i]) - float(values.start_value[i])
    return stats


def save_values(path: Path, values: LatticeValues, config: QLearningConfig) -> None:
    state = {"mode": values.mode, "config": asdict(config), "sweeps": values.sweeps, "residual": values.residual,
             "start_value": values.start_value.float(), "valid": values.valid}
    for name in ("q", "v_src", "advantage", "best_return"):
        state[name] = getattr(values, name).float()
    save_torch(state, path)


def qlearn(exp_dir: Path, splits: Sequence[str], mode: str, config: QLearningConfig, force: bool = False) -> Path:
    """Stage 6 for every split; returns the summary table's path.

    In a job of several processes each rank does every world_size-th shard and writes its values;
    rank 0 writes the summary. The values do not depend on the number of ranks.
    """
    ctx = distributed.context()
    lattice_dir = exp_dir / "lattices"
    config.check()
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown --reward {mode!r}; choose from {', '.join(REWARD_MODES)}")
    table_path = exp_dir / f"qlearn-{mode}.md"
    # Stage 5's marker is an input: while stage 5 is being redone (or after it failed) this step
    # refuses to run, and once it is redone this step is redone too. The values live inside the
    # split directories that stage 5 replaces, so they are outputs checked for presence.
    marker = StageMarker(lattice_dir, f"qlearn-{mode}", {"splits": list(splits), "q_learning": asdict(config)},
                         [lattice_dir / "stats.json", lattice_dir / ".make-lattices.done.json"],
                         outputs=[lattice_dir / split / f"q-{mode}" for split in splits] + [table_path])
    if distributed.main_decides(lambda: marker.skip_if_complete(force)):
        return table_path
    lattice_stats = json.loads((lattice_dir / "stats.json").read_text())
    rows, timings = {}, {}
    for split in splits:
        if split not in lattice_stats["splits"]:
            raise FileNotFoundError(f"no {split} lattices in {lattice_dir}: make them with stage 5 (--splits)")
        paths = ctx.shard(shard_paths(lattice_dir / split))
        mine: list[QLearningStats] = []
        with distributed.shared_output(lattice_dir / split / f"q-{mode}") as out:
            for path in distributed.progress_bar(paths, desc=f"q-learning {split}", unit="shard"):
                shard = LatticeShard.load(path)
                if shard.meta.get("model_digest") != lattice_stats["meta"]["model_digest"]:
                    raise ValueError(f"{path} comes from another model than {lattice_dir}/stats.json says; "
                                     f"remake the lattices (stage 5 with --force true)")
                start = time.time()
                values = lattice_values(shard.lattice, mode, alignments=shard.alignments,
                                        references=shard.references, config=config, skip_invalid=True)
                seconds = time.time() - start
                stats = shard_stats(shard, values, seconds)
                if stats.num_invalid:
                    logging.warning("%s: %d lattices without a complete path; their values are 0", path,
                                    stats.num_invalid)
                save_values(out / path.name, values, config)
                mine.append(stats)
        total = QLearningStats()
        for stats in (s for rank_stats in distributed.gather_objects(mine) for s in rank_stats):
            total.add(stats)
        rows[split] = {**total.summary(), "onebest_wer": lattice_stats["splits"][split]["onebest_wer"],
                       "oracle_wer": lattice_stats["splits"][split]["oracle_wer"]}
        timings[split] = total.timing()
        logging.info("q-learning %s (%s reward): %s", split, mode, json.dumps({**rows[split], **timings[split]}))
    if ctx.is_main:
        with atomic_output(exp_dir / f"qlearn-{mode}.json") as tmp:
            tmp.write_text(json.dumps({"config": asdict(config), "rows": rows}, indent=2) + "\n")
        record_timings(exp_dir, f"qlearn-{mode}", timings)
        with atomic_output(table_path) as tmp:
            tmp.write_text(summary_table(rows, mode, config, timings))
        marker.write()
    distributed.barrier()
    return table_path


def summary_table(rows: dict[str, dict], mode: str, config: QLearningConfig, timings: dict[str, dict]) -> str:
    """The report of qlearn-<reward>.md; its throughput column is measured (``timings``, as in timings.json)."""
    lines = [f"Q-learning over the stage-5 lattices, {mode} reward (alpha {config.alpha}, gamma {config.gamma}, "
             f"temperature {config.temperature}).", "",
             "| split | lattices | 1-best WER | oracle WER | greedy-Q path differs from 1-best | "
             "mean advantage of 1-best | sweeps | residual | arcs/s (all values) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for split, r in rows.items():
        lines.append(f"| {split} | {r['num_utts']} | {r['onebest_wer']:.2f} | {r['oracle_wer']:.2f} | "
                     f"{r['greedy_differs_pct']:.1f}% | {r['mean_onebest_advantage']:.3f} | {r['max_sweeps']} | "
                     f"{r['max_residual']:.2g} | {timings[split]['arcs_per_second']:.3g} |")
    return "\n".join(lines) + "\n"
