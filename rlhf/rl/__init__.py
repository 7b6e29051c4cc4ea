"""Reinforcement learning over k2 lattices (docs/lattice-rl.md) and the sequence objective of stage 7.

The public API, for code that is not a recipe stage:

    from rlhf.rl import QLearningConfig, frame_rewards, edit_product, q_learning, lattice_values

    values = lattice_values(lattice, mode="frame", alignments=alignments)   # or mode="edit", references=...
    values.q, values.v_src, values.advantage      # per lattice arc
    values.start_value                              # per lattice: V(start)

``q_learning`` runs the tabular update on any acyclic FsaVec with per-arc rewards;
``rlhf.rl.env.LatticeEnv`` exposes one lattice as a Gymnasium environment.
"""

from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.qlearning import QLearningConfig, QValues, greedy_paths, q_learning
from rlhf.rl.rewards import EditProduct, edit_product, frame_rewards
from rlhf.rl.values import LatticeValues, lattice_values

__all__ = ["LatticeMdp", "QLearningConfig", "QValues", "greedy_paths", "q_learning", "EditProduct", "edit_product",
           "frame_rewards", "LatticeValues", "lattice_values"]
