"""Training lattices as ready-to-use batches for sequence fine-tuning (stage 7).

The stage-5 shards of a split and their stage-6 values are read once and joined with the
utterances' features; utterances are grouped into batches of similar length. A batch keeps
everything that does not change while the model moves: padded features, the lattices with
their decision-process indices and level orders, the advantages and V(start), references.
"""

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import k2
import torch

from rlhf import distributed
from rlhf.data import load_cuts
from rlhf.decode import arc_labels
from rlhf.lattice_shards import LatticeShard, merge_shards, shard_paths
from rlhf.rl.mdp import LatticeMdp


@dataclass
class LatticeBatch:
    utts: list[int]                  # indices into the split's utterances
    features: torch.Tensor           # (N, T_in, F), zero-padded
    num_input_frames: torch.Tensor   # (N,)
    num_frames: list[int]            # network output frames (as in the lattices)
    lattice: k2.Fsa                  # FsaVec, lattice i is utterance utts[i]
    mdp: LatticeMdp
    advantage: torch.Tensor          # [num_arcs] stage-6 advantage (float64; 0 on arcs off every path)
    start_value: torch.Tensor        # [N] V(start) (float64)
    references: list[list[int]]      # output-label ids (the edit reward's reference)
    texts: list[str]                 # transcripts (the CTC regularizer's reference)
    outputs: list[list[int]]         # output labels of every arc of ``lattice`` (sampled paths' words)

    @property
    def size(self) -> int:
        return len(self.utts)

    @property
    def total_frames(self) -> int:
        return sum(self.num_frames)

    @property
    def total_words(self) -> int:
        return sum(len(r) for r in self.references)

    def to(self, device: torch.device) -> "LatticeBatch":
        if device == self.features.device:
            return self
        lattice = self.lattice.to(device)
        return LatticeBatch(self.utts, self.features.to(device), self.num_input_frames.to(device), self.num_frames,
                            lattice, LatticeMdp.from_fsas(lattice), self.advantage.to(device),
                            self.start_value.to(device), self.references, self.texts, self.outputs)


def time_masked(batch: LatticeBatch, generator: torch.Generator, max_fraction: float = 0.15,
                max_width: int = 100, max_masks: int = 10) -> LatticeBatch:
    """The batch with SpecAugment's time masks, drawn from ``generator`` by stage 3's rule (lhotse's
    SpecAugment: at most ``max_fraction`` of an utterance's frames in at most ``max_masks`` spans of
    at most ``max_width`` frames, set to the utterance's mean; lhotse masks 90% of the utterances,
    this every one). The frame count is unchanged, so the lattices stay valid: sequence training
    sees the kind of input the baseline was trained on."""
    features = batch.features.clone()
    for i, length in enumerate(batch.num_input_frames.tolist()):
        total = max_fraction * length
        num_masks = min(max_masks, math.ceil(total / max_width))
        widest = int(min(max_width, total // num_masks)) if num_masks else 0
        if widest < 1:
            continue
        mean = features[i, :length].mean()
        widths = torch.randint(0, widest, (num_masks,), generator=generator).tolist()
        for width in widths:
            start = int(torch.rand((), generator=generator) * (length - width))
            features[i, start:start + width] = mean
    return replace(batch, features=features)


@dataclass
class SplitLattices:
    """All lattices of a split with their values and features, one entry per utterance."""
    shard: LatticeShard              # the merged shards; the lattice carries the stage-6 ``advantage`` per arc
    start_value: torch.Tensor        # [num_utts] V(start), float64
    features: list[torch.Tensor]     # per utterance (T_in, F)

    @property
    def num_utts(self) -> int:
        return len(self.shard.cut_ids)

    def batch(self, utts: Sequence[int]) -> LatticeBatch:
        utts = list(utts)
        index = torch.tensor(utts, dtype=torch.int32)
        lattice = k2.index_fsa(self.shard.lattice, index)
        mdp = LatticeMdp.from_fsas(lattice)
        feats = [self.features[u] for u in utts]
        num_in = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        return LatticeBatch(utts, padded, num_in, [self.shard.num_frames[u] for u in utts], lattice, mdp,
                            lattice.advantage.to(torch.float64), self.start_value[index.long()],
                            [self.shard.references[u] for u in utts], [self.shard.texts[u] for u in utts],
                            arc_labels(lattice).tolist())


def load_split_lattices(lattice_dir: Path, split: str, reward: str, cuts_path: Path, model_digest: str,
                        lang_digest: str, max_utts: Optional[int] = None) -> SplitLattices:
    """Shards, stage-6 values (``q-<reward>/``) and features of a split.

    Refuses shards made by another model or lang dir, and values that do not match their shard.
    """
    split_dir = Path(lattice_dir) / split
    values_dir = split_dir / f"q-{reward}"
    shards, advantages, start_values = [], [], []
    for path in shard_paths(split_dir):
        shard = LatticeShard.load(path)
        shard.check_made_with(path, model_digest, lang_digest)
        values_path = values_dir / path.name
        if not values_path.is_file():
            raise FileNotFoundError(f"{values_path} not found: run Q-learning with --reward {reward} "
                                    f"(stage 6, steps/qlearn.sh) first")
        values = torch.load(values_path, map_location="cpu")
        if values["advantage"].numel() != shard.lattice.num_arcs or values["mode"] != reward:
            raise ValueError(f"{values_path} does not belong to {path} (other arcs or reward): redo stage 6")
        advantage = values["advantage"].to(torch.float64)
        shards.append(shard)
        advantages.append(torch.where(torch.isfinite(advantage), advantage, torch.zeros_like(advantage)))
        start_values.append(values["start_value"].to(torch.float64))
        if max_utts is not None and sum(len(s.cut_ids) for s in shards) >= max_utts:
            break
    merged = merge_shards(shards, shards[0].meta)
    merged.lattice.advantage = torch.cat(advantages)  # travels with index_fsa into batches
    start_value = torch.cat(start_values)
    if max_utts is not None and len(merged.cut_ids) > max_utts:
        merged, start_value = merged.select(list(range(max_utts))), start_value[:max_utts]
    features = load_features(cuts_path, merged.cut_ids)
    return SplitLattices(merged, start_value, features)


def load_features(cuts_path: Path, cut_ids: list[str]) -> list[torch.Tensor]:
    """The fbank features of the given cuts, in that order (one pass over the lazy manifest)."""
    wanted = {c: i for i, c in enumerate(cut_ids)}
    features: list[Optional[torch.Tensor]] = [None] * len(cut_ids)
    for cut in distributed.progress_bar(load_cuts(cuts_path), desc="features", unit="cut", leave=False):
        i = wanted.get(cut.id)
        if i is not None:
            features[i] = torch.from_numpy(cut.load_features())
    missing = [c for c, f in zip(cut_ids, features) if f is None]
    if missing:
        raise ValueError(f"{len(missing)} lattice utterances (e.g. {missing[0]}) are not in {cuts_path}: "
                         f"the lattices were made from other cuts; redo stage 5")
    logging.info("loaded the features of %d utterances from %s", len(cut_ids), cuts_path)
    return features


def length_batches(num_frames: Sequence[int], utts: Sequence[int], max_frames: int) -> list[list[int]]:
    """Utterances sorted by length, cut into batches of at most ``max_frames`` padded output frames."""
    batches, current, longest = [], [], 0
    for u in sorted(utts, key=lambda u: (num_frames[u], u)):
        longest_if_added = max(longest, num_frames[u])
        if current and longest_if_added * (len(current) + 1) > max_frames:
            batches.append(current)
            current, longest_if_added = [], num_frames[u]
        current.append(u)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches
