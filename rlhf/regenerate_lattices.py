"""Lattices that follow the model during fine-tuning (stage 7, ``--regenerate-lattices true``).

Stage 5 decodes the training set once, with the baseline. Once the model moves, the stored
lattices hold the competitors the baseline confused, not those the current model confuses
(Vesely et al. 2013 regenerate sMBR lattices after an epoch; LF-MMI's denominator is computed
afresh for every minibatch). A ``LatticeRegenerator`` decodes the utterances of one update
with the current model exactly as stage 5 did (its graph, beams and LM scale, read from the
lattice directory's ``stats.json``) and redoes their stage-6 values with stage 6's settings,
giving a ``LatticeBatch`` in place of the stored one. The time it takes is part of the
update's, so equal-time comparisons charge it.
"""

import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch

from rlhf.decode import LatticeConfig, arc_labels
from rlhf.lang.tokenizer import Tokenizer
from rlhf.lattice_batches import LatticeBatch
from rlhf.make_lattices import LatticeMaker
from rlhf.model import CtcModel
from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.qlearning import QLearningConfig
from rlhf.rl.values import lattice_values


def stage5_graph(meta: dict, lang_dir: Path) -> Optional[Path]:
    """The HLG that stage 5 decoded with (None: the CTC topology): the path its stats record, which
    is relative to the directory it ran in, or else the file of that name in ``lang_dir``."""
    if not meta.get("hlg"):
        return None
    for path in (Path(meta["hlg"]), Path(lang_dir) / Path(meta["hlg"]).name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{meta['hlg']}, the graph of the stored lattices, is neither in the working directory "
                            f"nor in {lang_dir}: run from the recipe directory that made them")


class LatticeRegenerator:
    """Stage 5 + stage 6 for one batch of training utterances, with the model as it is now."""

    def __init__(self, maker: LatticeMaker, reward: Optional[str], q_config: QLearningConfig, cut_ids: list[str]):
        self.maker = maker
        self.reward = reward        # None: no stage-6 values (the objective reads none: mmi, mwer)
        self.q_config = q_config
        self.cut_ids = cut_ids      # of the split's utterances (a LatticeBatch's ``utts`` index them)
        self.seconds = 0.0
        self.num_dropped = 0        # utterances whose new lattice came out empty

    @classmethod
    def like_stage5(cls, model: CtcModel, tokenizer: Tokenizer, lang_dir: Path, lattice_dir: Path,
                    reward: Optional[str], cut_ids: list[str], device: torch.device) -> "LatticeRegenerator":
        """A regenerator with the settings of the lattices in ``lattice_dir`` (stages 5 and 6)."""
        meta = json.loads((lattice_dir / "stats.json").read_text())["meta"]
        hlg = stage5_graph(meta, lang_dir)
        q_config = QLearningConfig()
        if reward is not None:
            values_marker = lattice_dir / f".qlearn-{reward}.done.json"
            if not values_marker.is_file():
                raise FileNotFoundError(f"{values_marker} not found: run stage 6 with --reward {reward} first")
            q_config = QLearningConfig(**json.loads(values_marker.read_text())["options"]["q_learning"])
        maker = LatticeMaker(model, tokenizer, meta["graph"], LatticeConfig(**meta["lattice_config"]), device,
                             lang_dir, hlg)
        return cls(maker, reward, q_config, cut_ids)

    @torch.no_grad()
    def __call__(self, batch: LatticeBatch) -> LatticeBatch:
        """``batch`` with the current model's lattices and their values (same utterances in the same
        order, clean features; an utterance whose lattice comes out empty is dropped and counted)."""
        start = time.perf_counter()
        cut_ids = [self.cut_ids[u] for u in batch.utts]
        shard, stats = self.maker.lattices(batch.features, batch.num_input_frames, batch.texts, cut_ids)
        if not shard.cut_ids:
            raise ValueError(f"no utterance of a batch ({cut_ids[0]}, ...) got a lattice from the current model: "
                             f"the model has drifted too far for stage 5's beams")
        dropped = stats.num_empty + stats.num_unaligned
        if dropped:
            self.num_dropped += dropped
            logging.warning("%d of %d utterances of a batch dropped (empty lattice from the current model)",
                            dropped, batch.size)
        # the batch's order (the decoder sorts by length), so that sums over the batch are the stored batch's
        position = {c: i for i, c in enumerate(cut_ids)}
        shard = shard.select(sorted(range(len(shard.cut_ids)), key=lambda i: position[shard.cut_ids[i]]))
        keep = [position[c] for c in shard.cut_ids]
        lattice = shard.lattice
        if self.reward is None:
            advantage = torch.zeros(lattice.num_arcs, dtype=torch.float64, device=lattice.device)
            start_value = torch.zeros(len(keep), dtype=torch.float64, device=lattice.device)
        else:
            values = lattice_values(lattice, self.reward, alignments=shard.alignments, references=shard.references,
                                    config=self.q_config, skip_invalid=True)
            advantage = values.advantage.to(torch.float64)
            advantage = torch.where(torch.isfinite(advantage), advantage, torch.zeros_like(advantage))
            start_value = values.start_value.to(torch.float64)
        index = torch.tensor(keep, dtype=torch.int64, device=batch.features.device)
        fresh = LatticeBatch([batch.utts[i] for i in keep], batch.features.index_select(0, index),
                             batch.num_input_frames.index_select(0, index), list(shard.num_frames), lattice,
                             LatticeMdp.from_fsas(lattice), advantage, start_value,
                             shard.references, shard.texts, arc_labels(lattice).tolist())
        self.seconds += time.perf_counter() - start
        return fresh
