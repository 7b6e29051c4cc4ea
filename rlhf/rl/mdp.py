"""A k2 FsaVec seen as a batch of finite acyclic decision processes (docs/lattice-rl.md).

State = FSA state, action = an arc leaving it, deterministic transition to the arc's
destination, terminal = the FSA's final state (k2's last state). Everything is indexed
globally over the FsaVec, so one tensor operation covers every lattice at once.
"""

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import k2
import numpy as np
import torch

from rlhf.k2_private import backward_scores, forward_scores
from rlhf.rl import kernels

# scatter_reduce (segment max) is "beta" in torch 1.13 but stable in use; one warning per process is noise.
warnings.filterwarnings("ignore", message="scatter_reduce", category=UserWarning)


@dataclass
class LatticeMdp:
    """Index tensors (on the FsaVec's device) describing the decision processes of an FsaVec.

    Per-arc indices stay int32 (half the memory traffic of int64 on millions of arcs); use
    ``index_select`` with them, and ``src64`` where torch wants int64 (scatter).
    """
    num_fsas: int
    num_states: int
    src: torch.Tensor          # [num_arcs] global source state of each arc (int32, as k2 keeps it)
    dest: torch.Tensor         # [num_arcs] global destination state of each arc (int32)
    start: torch.Tensor        # [num_fsas] global start state (-1 for an FSA with no states)
    final: torch.Tensor        # [num_fsas] global final state (-1 for an FSA with no states)
    fsas: k2.Fsa               # the FsaVec itself

    @property
    def num_arcs(self) -> int:
        return self.src.numel()

    @cached_property
    def src64(self) -> torch.Tensor:
        return self.src.long()

    @cached_property
    def state_splits(self) -> torch.Tensor:
        """[num_fsas + 1] int32: FSA f's states are ``state_splits[f]:state_splits[f + 1]``."""
        return self.fsas.arcs.shape().row_splits(1)

    @cached_property
    def arc_splits(self) -> torch.Tensor:
        """[num_states + 1] int32: state s's arcs are ``arc_splits[s]:arc_splits[s + 1]`` (k2 keeps them contiguous)."""
        return self.fsas.arcs.shape().row_splits(2)

    @cached_property
    def arc_fsa(self) -> torch.Tensor:
        """[num_arcs] the FSA each arc belongs to."""
        return arc_fsa_index(self.fsas)

    @cached_property
    def arc_frames(self) -> Optional[torch.Tensor]:
        """Each arc's ``frame_idx`` when frames order the process, else None.

        They do when all arcs leaving a state share a frame and every arc's destination is left
        at a later frame: then a level per frame is a topological order. k2 lattices from
        ``intersect_dense_pruned`` are like that, and frames are far cheaper than longest paths.
        """
        frames = getattr(self.fsas, "frame_idx", None)
        if frames is None or self.num_arcs == 0:
            return None
        # Arcs are grouped by source state: they share a frame when each equals its predecessor
        # of the same source. A state's frame is then its first arc's (final states: none).
        same_src = self.src[1:] == self.src[:-1]
        if not bool(((frames[1:] == frames[:-1]) | ~same_src).all()):
            return None
        arc_splits = self.fsas.arcs.shape().row_splits(2)
        has_arcs = arc_splits[1:] > arc_splits[:-1]
        state_frame = frames.index_select(0, arc_splits[:-1].clamp(max=self.num_arcs - 1))
        state_frame = torch.where(has_arcs, state_frame, torch.full_like(state_frame, _NO_FRAME))
        if not bool((state_frame.index_select(0, self.dest) > frames).all()):
            return None
        return frames

    @cached_property
    def sweep_order(self) -> tuple[torch.Tensor, list[int]]:
        """Arcs in reverse topological order, all arcs leaving a state in the same level.

        Levels are frames, last first, or else the height of the arc's source state (most arcs
        on a path to the final state). Returns the arc order and the level boundaries in it
        (level i is ``order[b[i]:b[i+1]]``).
        """
        if self.arc_frames is not None:
            return _level_order(self.arc_frames.max() - self.arc_frames)
        height = _longest_paths(self.fsas, forward=False)
        return _level_order(height.index_select(0, self.src).clamp(min=0))  # states that cannot finish: any level

    @cached_property
    def forward_order(self) -> tuple[torch.Tensor, list[int]]:
        """Arcs in topological order, a level of equal frame (or source depth) at a time."""
        if self.arc_frames is not None:
            return _level_order(self.arc_frames)
        depth = _longest_paths(self.fsas, forward=True)
        return _level_order(depth.index_select(0, self.src).clamp(min=0))  # unreachable states: any level

    @staticmethod
    def from_fsas(fsas: k2.Fsa) -> "LatticeMdp":
        """Build from an FsaVec; it must be top-sorted and acyclic (k2 lattices are).

        Raises ValueError otherwise: a cycle has no finite-horizon return, and an FSA that is not
        top-sorted can be fixed by the caller with ``k2.top_sort`` (which keeps attributes).
        """
        if len(fsas.shape) != 3:
            raise ValueError("expected an FsaVec (3 axes); wrap a single Fsa with k2.create_fsa_vec([fsa])")
        if fsas.arcs.num_elements() > 0 and not fsas.properties & k2.fsa_properties.TOPSORTED_AND_ACYCLIC:
            raise ValueError(f"the FsaVec is not top-sorted and acyclic ({fsas.properties_str}); "
                             f"sort it with k2.top_sort (cyclic lattices have no finite return)")
        shape = fsas.arcs.shape()
        state_splits = shape.row_splits(1).long()
        src = shape.row_ids(2)
        local = fsas.arcs.values()
        if kernels.compiled(local):  # one pass, no temporaries
            dest = kernels.empty(src.numel(), torch.int32)
            kernels.arc_dests(local.numpy(), src.numpy(), dest.numpy())
        else:
            dest = src + (local[:, 1] - local[:, 0])  # same FSA: global = local + the FSA's first state
        sizes = state_splits[1:] - state_splits[:-1]
        empty = sizes == 0
        start = torch.where(empty, torch.full_like(sizes, -1), state_splits[:-1])
        final = torch.where(empty, torch.full_like(sizes, -1), state_splits[1:] - 1)
        return LatticeMdp(shape.dim0, int(state_splits[-1]), src, dest, start, final, fsas)


_NO_FRAME = (1 << 31) - 1  # the frame of a state no arc leaves (a final state): after every frame


def _longest_paths(fsas: k2.Fsa, forward: bool) -> torch.Tensor:
    """Per state, the most arcs on a path from the start (forward) or to the final state (-1: none).

    States of equal height (or depth) never reach each other, so a sweep can update them
    together. k2 computes both as tropical forward/backward scores with every arc scoring 1.
    """
    counting = k2.Fsa(fsas.arcs.clone())
    counting.scores = torch.ones(fsas.arcs.num_elements(), device=fsas.device)
    scores = (forward_scores if forward else backward_scores)(counting, log_semiring=False)
    return torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -1.0)).long()


def _level_order(level: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Arc indices sorted by ``level`` (stable), and the boundaries of each non-empty level.

    Levels are small integers: numpy's stable sort of 16-bit integers is a radix sort, several
    times faster than a comparison sort on this many arcs.
    """
    if level.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=level.device), [0]
    if int(level.max()) < (1 << 15):
        keys = level.to(torch.int16).cpu().numpy()
        order = torch.from_numpy(np.argsort(keys, kind="stable")).to(level.device)
    else:
        order = torch.argsort(level, stable=True)
    counts = torch.bincount(level)
    counts = counts[counts > 0]
    return order, [0] + counts.cumsum(0).tolist()


def first_arcs(fsas: k2.Fsa) -> torch.Tensor:
    """Global index of each FSA's first arc, plus the total at the end ([num_fsas + 1])."""
    shape = fsas.arcs.shape()
    return shape.row_splits(2)[shape.row_splits(1).long()].long()


def arc_fsa_index(fsas: k2.Fsa) -> torch.Tensor:
    """[num_arcs] the index of the FSA each arc of an FsaVec belongs to (long)."""
    shape = fsas.arcs.shape()
    return shape.row_ids(1).index_select(0, shape.row_ids(2)).long()
