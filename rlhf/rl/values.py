"""Q, V and advantages per lattice arc, in either reward mode: the package's main entry point."""

from dataclasses import dataclass
from typing import Optional

import k2
import torch

from rlhf.rl import kernels
from rlhf.rl.mdp import LatticeMdp, first_arcs
from rlhf.rl.qlearning import QLearningConfig, QValues, greedy_paths, q_learning
from rlhf.rl.rewards import edit_product, frame_rewards

REWARD_MODES = ("frame", "edit")


@dataclass
class LatticeValues:
    """Q-learning results of an FsaVec of lattices.

    The decision process is the lattice itself in ``frame`` mode and its product with the
    references' Levenshtein automata in ``edit`` mode (``mdp_fsas``); ``mdp_q``, ``mdp_v`` and
    ``mdp_rewards`` live there. Per lattice arc (both modes):

    - ``q``, ``v_src``, ``advantage``: in ``frame`` mode the MDP's own Q(s,a), V(s) and
      Q(s,a) - V(s). In ``edit`` mode, where a lattice state alone does not fix the return,
      ``q`` is the best return of a complete path through the arc, ``v_src`` the best through
      its source state, and ``advantage`` = q - v_src (0 on an oracle path).
    - ``best_return``: the best return of any complete path through the arc (both modes).

    Per lattice: ``start_value`` V(start) (in ``edit`` mode minus the oracle error count),
    ``valid`` (False: no complete path; its values are 0), ``greedy_arcs`` (lattice arcs of
    the greedy-Q path from the start; in ``edit`` mode the oracle path).
    """
    mode: str
    mdp_fsas: k2.Fsa
    mdp_rewards: torch.Tensor
    mdp_q: torch.Tensor
    mdp_v: torch.Tensor
    q: torch.Tensor
    v_src: torch.Tensor
    advantage: torch.Tensor
    best_return: torch.Tensor
    start_value: torch.Tensor
    valid: torch.Tensor
    greedy_arcs: list[list[int]]
    sweeps: int
    residual: float


def lattice_values(lattice: k2.Fsa, mode: str = "frame", alignments: Optional[list[torch.Tensor]] = None,
                   references: Optional[list[list[int]]] = None, config: Optional[QLearningConfig] = None,
                   skip_invalid: bool = False) -> LatticeValues:
    """Q-learning over every arc of an FsaVec of lattices.

    ``frame`` mode needs ``alignments`` (reference CTC label per frame, per lattice) and a
    ``frame_idx`` arc attribute; ``edit`` mode needs ``references`` (output-label ids per lattice).
    A lattice with no path from its start to its final state raises ValueError naming it, or
    with ``skip_invalid`` is marked ``valid = False`` and gets zeros, never NaN.
    """
    config = config or QLearningConfig()
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown reward mode {mode!r}; choose from {', '.join(REWARD_MODES)}")
    lattice_mdp = LatticeMdp.from_fsas(lattice)
    if mode == "frame":
        if alignments is None:
            raise ValueError("frame rewards need the reference forced alignments")
        mdp_fsas, mdp, rewards = lattice, lattice_mdp, frame_rewards(lattice, alignments)
        lattice_arc = torch.arange(lattice_mdp.num_arcs, device=lattice.device)
    else:
        if references is None:
            raise ValueError("edit rewards need the references")
        product = edit_product(lattice, references)
        mdp_fsas, rewards, lattice_arc = product.fsas, product.rewards, product.lattice_arc
        mdp = LatticeMdp.from_fsas(mdp_fsas)
    values = q_learning(mdp, rewards, config)
    valid = values.has_path(mdp)
    if not skip_invalid and not valid.all():
        bad = torch.nonzero(~valid).squeeze(1).tolist()
        raise ValueError(f"lattice(s) {bad[:10]} have no path from the start to the final state "
                         f"(empty, or dead ends only); drop them or pass skip_invalid=True")
    through = _best_return_through(mdp, rewards, values, lattice_arc, lattice_mdp.num_arcs)
    start_value = values.start_value(mdp)
    if mode == "frame":
        q, v_src, advantage = values.q, values.v_src(mdp), values.advantage(mdp)
    else:
        q = through
        v_src = torch.full((lattice_mdp.num_states,), float("-inf"), dtype=torch.float64, device=q.device)
        v_src.scatter_reduce_(0, lattice_mdp.src64, through, reduce="amax", include_self=True)
        v_src = v_src.index_select(0, lattice_mdp.src)
        advantage = torch.where(torch.isfinite(through), through - v_src, through)
    fsa_valid = valid.index_select(0, lattice_mdp.arc_fsa)
    zero = torch.zeros_like(q)
    q, v_src, advantage, through = (torch.where(fsa_valid, t, zero) for t in (q, v_src, advantage, through))
    start_value = torch.where(valid, start_value, torch.zeros_like(start_value))
    to_lattice = lattice_arc.tolist()
    first_arc = first_arcs(lattice).tolist()
    greedy = [[to_lattice[a] - first_arc[i] for a in path if to_lattice[a] >= 0]
              for i, path in enumerate(greedy_paths(mdp, values))]
    return LatticeValues(mode, mdp_fsas, rewards, values.q, values.v, q, v_src, advantage, through, start_value,
                         valid, greedy, values.sweeps, values.residual)


def _best_return_through(mdp: LatticeMdp, rewards: torch.Tensor, values: QValues, lattice_arc: torch.Tensor,
                         num_lattice_arcs: int) -> torch.Tensor:
    """Per lattice arc: max over the MDP arcs that take it of (best return to their source) + Q.

    With gamma = 1 that is the best complete-path return through the arc; -inf: none.
    """
    total = _forward_returns(mdp, rewards).index_select(0, mdp.src) + values.q
    through = torch.full((num_lattice_arcs,), float("-inf"), dtype=torch.float64, device=rewards.device)
    taken = lattice_arc >= 0
    through.scatter_reduce_(0, lattice_arc[taken], total[taken], reduce="amax", include_self=True)
    return through


def _forward_returns(mdp: LatticeMdp, rewards: torch.Tensor) -> torch.Tensor:
    """Best undiscounted return from the start to every state (float64; -inf: unreachable).

    One topological sweep: arc by arc in the compiled kernel, else a level of equal depth at a time.
    """
    forward = kernels.full(mdp.num_states, float("-inf"), rewards)
    forward[mdp.start[mdp.start >= 0]] = 0.0
    if kernels.compiled(rewards):
        kernels.forward_returns(*(kernels.as_numpy(t) for t in (mdp.src, mdp.dest, rewards, forward)))
        return forward
    order, bounds = mdp.forward_order
    src, dest, r = (t.index_select(0, order) for t in (mdp.src, mdp.dest, rewards))
    for begin, end in zip(bounds[:-1], bounds[1:]):
        forward.scatter_reduce_(0, dest[begin:end].long(), forward.index_select(0, src[begin:end]) + r[begin:end],
                                reduce="amax", include_self=True)
    return forward


def oracle_errors(lattice: k2.Fsa, references: list[list[int]]) -> torch.Tensor:
    """Per lattice, the fewest errors of any of its paths against its reference (exact lattice oracle).

    -V(start) of the edit-reward process; a lattice without a complete path raises ValueError.
    """
    product = edit_product(lattice, references)
    mdp = LatticeMdp.from_fsas(product.fsas)
    values = q_learning(mdp, product.rewards)
    if not values.has_path(mdp).all():
        raise ValueError("a lattice has no complete path; its oracle is undefined")
    return (-values.start_value(mdp)).round().long()
