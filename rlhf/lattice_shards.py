"""The on-disk format of training lattices: ``exp/<name>/lattices/<split>/shard-NNNNN.pt``.

A shard holds an FsaVec (``Fsa.as_dict()``, icefall's convention) and, per lattice, the cut id,
the reference (text, output-label ids), its forced alignment and frame count. Arc attributes:
``labels`` (CTC token per frame, 0 = blank), ``aux_labels`` (output words or tokens),
``frame_idx`` (the arc's frame), ``graph_scores`` (the decoding graph's share of the score,
LM scale applied), so a later model can re-score the arcs: kappa * log p(label | frame) + graph score.
``meta`` names the model and lang dir the shard came from, so it is never used with another.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import k2
import torch

from rlhf.graphs import fsa_to_dict
from rlhf.stage import save_torch


@dataclass
class LatticeShard:
    lattice: k2.Fsa                 # FsaVec, lattice i is utterance i
    cut_ids: list[str]
    texts: list[str]
    references: list[list[int]]     # output-label ids of each reference (words for HLG lattices); OOV -> oov_id
    alignments: list[torch.Tensor]  # CTC label per frame of each reference (the frame reward's target)
    num_frames: list[int]           # network output frames of each utterance
    meta: dict[str, Any]            # model digest, lang digest, graph, options

    def save(self, path: Path) -> None:
        lengths = torch.tensor([len(a) for a in self.alignments], dtype=torch.int64)
        flat = torch.cat(self.alignments).to(torch.int32) if self.alignments else torch.zeros(0, dtype=torch.int32)
        state = {"lattice": fsa_to_dict(self.lattice.to("cpu")), "cut_ids": self.cut_ids, "texts": self.texts,
                 "references": self.references, "alignments": flat, "alignment_lengths": lengths,
                 "num_frames": self.num_frames, "meta": self.meta}
        save_torch(state, path)

    @staticmethod
    def load(path: Path, device: torch.device = torch.device("cpu")) -> "LatticeShard":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: make lattices first (stage 5, steps/make_lattices.sh)")
        state = torch.load(path, map_location="cpu")
        if "lattice" not in state or "meta" not in state:
            raise ValueError(f"{path} is not a lattice shard of this toolkit")
        lattice = k2.Fsa.from_dict(state["lattice"]).to(device)
        alignments = list(torch.split(state["alignments"].long(), state["alignment_lengths"].tolist()))
        return LatticeShard(lattice, state["cut_ids"], state["texts"], state["references"], alignments,
                            state["num_frames"], state["meta"])

    def check_made_with(self, path: Path, model_digest: str, lang_digest: str) -> None:
        """Refuse a shard made by another model or lang dir (its arcs would index other outputs)."""
        for key, want, what in (("model_digest", model_digest, "model"), ("lang_digest", lang_digest, "lang dir")):
            if self.meta.get(key) != want:
                raise ValueError(f"{path} was made with another {what} ({self.meta.get('made_with', '?')}); "
                                 f"remake the lattices (stage 5 with --force true) for this model and lang dir")


    def select(self, indices: list[int]) -> "LatticeShard":
        """The shard of the given utterances, in that order."""
        lattice = k2.index_fsa(self.lattice, torch.tensor(indices, dtype=torch.int32, device=self.lattice.device))
        return LatticeShard(lattice, [self.cut_ids[i] for i in indices], [self.texts[i] for i in indices],
                            [self.references[i] for i in indices], [self.alignments[i] for i in indices],
                            [self.num_frames[i] for i in indices], self.meta)


def merge_shards(parts: list[LatticeShard], meta: dict) -> LatticeShard:
    """One shard from several (batches of one split, or the shards of a split)."""
    lattices = [p.lattice for p in parts if p.lattice.shape[0] > 0]
    lattice = k2.cat(lattices) if lattices else parts[0].lattice
    return LatticeShard(lattice, sum((p.cut_ids for p in parts), []), sum((p.texts for p in parts), []),
                        sum((p.references for p in parts), []), sum((p.alignments for p in parts), []),
                        sum((p.num_frames for p in parts), []), meta)


def shard_path(directory: Path, index: int) -> Path:
    return Path(directory) / f"shard-{index:05d}.pt"


def shard_paths(directory: Path) -> list[Path]:
    """The shards of a split, in order; a missing directory or no shard is an error."""
    paths = sorted(Path(directory).glob("shard-*.pt"))
    if not paths:
        raise FileNotFoundError(f"no lattice shards in {directory}: run stage 5 (steps/make_lattices.sh) first")
    return paths
