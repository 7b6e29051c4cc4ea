"""One lattice as a Gymnasium environment, so standard RL agents can be tried on ASR hypotheses.

Observation: the current lattice state (``Discrete(num_states)``). Action: the index of an arc
among those leaving the current state (``Discrete(max out-degree)``; ``info["action_mask"]``
marks the valid ones, and an invalid action raises ValueError). An episode runs from the
start state to the final state. Rewards are those of docs/lattice-rl.md: in ``frame`` mode each arc
pays its frame reward; in ``edit`` mode the final step pays minus the edit distance between
the path's output labels and the reference (the edit reward is a property of the whole path).
Either way an episode's return is exactly the reward of the path it took.
"""

from typing import Any, Optional

import gymnasium
import k2
import numpy as np
import torch

from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.qlearning import q_learning
from rlhf.rl.rewards import edit_distance, frame_rewards


class LatticeEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, lattice: k2.Fsa, mode: str = "frame", alignment: Optional[torch.Tensor] = None,
                 reference: Optional[list[int]] = None):
        """``lattice`` is one Fsa (not a vector); ``alignment`` for ``frame``, ``reference`` for ``edit``."""
        fsas = k2.create_fsa_vec([lattice]) if len(lattice.shape) == 2 else lattice
        if fsas.shape[0] != 1:
            raise ValueError("LatticeEnv takes one lattice; index the FsaVec (lattice[i])")
        mdp = LatticeMdp.from_fsas(fsas)
        if not bool(q_learning(mdp, torch.zeros(mdp.num_arcs)).has_path(mdp)[0]):
            raise ValueError("the lattice has no path from its start to its final state")
        if mode == "frame":
            if alignment is None:
                raise ValueError("frame mode needs the reference alignment")
            self.arc_rewards = frame_rewards(fsas, [alignment]).tolist()
        elif mode == "edit":
            if reference is None:
                raise ValueError("edit mode needs the reference labels")
            self.arc_rewards = [0.0] * mdp.num_arcs
            aux = fsas.aux_labels
            outputs = aux.tolist() if isinstance(aux, k2.RaggedTensor) else [[x] for x in aux.tolist()]
            self.arc_outputs = [[x for x in out if x > 0] for out in outputs]
        else:
            raise ValueError(f"unknown reward mode {mode!r}; choose frame or edit")
        self.mode = mode
        self.reference = list(reference or [])
        arc_splits = fsas.arcs.shape().row_splits(2).tolist()
        self.out_arcs = [list(range(arc_splits[s], arc_splits[s + 1])) for s in range(mdp.num_states)]
        self.dest = mdp.dest.tolist()
        self.final = int(mdp.final[0])
        self.start = int(mdp.start[0])
        max_degree = max(len(a) for a in self.out_arcs)
        self.observation_space = gymnasium.spaces.Discrete(mdp.num_states)
        self.action_space = gymnasium.spaces.Discrete(max_degree)
        self.state = self.start
        self.outputs: list[int] = []

    def arcs_from(self, state: int) -> list[int]:
        """The arcs (indices into the lattice's arcs) that actions 0, 1, ... take from ``state``."""
        return self.out_arcs[state]

    def _info(self) -> dict[str, Any]:
        mask = np.zeros(self.action_space.n, dtype=np.int8)
        mask[:len(self.out_arcs[self.state])] = 1
        return {"action_mask": mask}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        self.state, self.outputs = self.start, []
        return self.state, self._info()

    def step(self, action: int):
        arcs = self.out_arcs[self.state]
        if self.state == self.final:
            raise ValueError("the episode has ended; call reset()")
        if not 0 <= int(action) < len(arcs):
            raise ValueError(f"action {action} is not valid in state {self.state} ({len(arcs)} arcs leave it)")
        arc = arcs[int(action)]
        reward = self.arc_rewards[arc]
        self.state = self.dest[arc]
        terminated = self.state == self.final
        if self.mode == "edit":
            self.outputs += self.arc_outputs[arc]
            if terminated:
                reward = -float(edit_distance(self.outputs, self.reference))
        info = self._info()
        info["arc"] = arc
        return self.state, reward, terminated, False, info
