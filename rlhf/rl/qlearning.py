"""Tabular Q-learning over every arc of every lattice at once (docs/lattice-rl.md).

The seed's rule, applied to all arcs of an FsaVec:

    Q(s,a) <- Q(s,a) + alpha [ r(a) + gamma max_a' Q(s',a') - Q(s,a) ],    0 at the final state.

A sweep updates the states in reverse topological order, a whole level at a time (a frame of
a lattice, or states of equal height, never reach each other), so the Python loop runs over
levels, never over arcs or states. With alpha = 1 one sweep is exact: Q(s,a) is the best discounted return of any
path that takes a from s. With alpha < 1 sweeps repeat until the Bellman residual
max |r + gamma V(s') - Q| is below ``tolerance``; they converge to the same fixed point.

The soft variant (``temperature`` T > 0) replaces the max by V(s) = T log sum_a exp(Q(s,a) / T).
With gamma = 1, V(start) = T log sum over complete paths of exp(return / T): the value of the
Boltzmann policy over returns, which tends to the hard max as T -> 0.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch

from rlhf.rl import kernels
from rlhf.rl.mdp import LatticeMdp


@dataclass
class QLearningConfig:
    alpha: float = field(default=1.0, metadata={
        "help": "learning rate of the Q update, in (0, 1]; with 1 one sweep is exact"})
    gamma: float = field(default=1.0, metadata={"help": "discount of the next arc's value, in [0, 1]"})
    tolerance: float = field(default=1e-6, metadata={
        "help": "sweeps stop once the Bellman residual max|r + gamma V(s') - Q| is at most this (reward units)"})
    max_sweeps: int = field(default=1000, metadata={
        "help": "most sweeps over the lattices; the residual after the last is reported"})
    temperature: float = field(default=0.0, metadata={
        "help": "0: the hard max of Q-learning; T > 0: soft values V(s) = T log sum_a exp(Q(s,a) / T)"})

    def check(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"--alpha must be in (0, 1], got {self.alpha}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"--gamma must be in [0, 1], got {self.gamma}")
        if self.temperature < 0.0:
            raise ValueError(f"--temperature must be >= 0 (0 is the hard max), got {self.temperature}")
        if self.max_sweeps < 1 or self.tolerance < 0.0:
            raise ValueError("--max-sweeps must be >= 1 and --tolerance >= 0")


@dataclass
class QValues:
    """Result of Q-learning on an FsaVec; tensors are float64 on the FsaVec's device."""
    q: torch.Tensor           # [num_arcs]; -inf for an arc with no path to a final state
    v: torch.Tensor           # [num_states]; 0 at final states, -inf where no path to the final state
    sweeps: int
    residual: float           # Bellman residual after the last sweep (live arcs only)

    def v_src(self, mdp: LatticeMdp) -> torch.Tensor:
        return self.v.index_select(0, mdp.src)

    @property
    def live(self) -> torch.Tensor:
        """Arcs on some path to a final state (the others have Q = -inf)."""
        return torch.isfinite(self.q)

    def advantage(self, mdp: LatticeMdp) -> torch.Tensor:
        """A(s,a) = Q(s,a) - V(s); -inf for arcs with no path to a final state."""
        return torch.where(self.live, self.q - self.v.index_select(0, mdp.src), self.q)

    def has_path(self, mdp: LatticeMdp) -> torch.Tensor:
        """Per FSA: whether a path leads from its start to its final state."""
        return (mdp.start >= 0) & torch.isfinite(self.v[mdp.start.clamp(min=0)])

    def start_value(self, mdp: LatticeMdp) -> torch.Tensor:
        """V(start) per FSA (-inf for an FSA without a complete path)."""
        value = self.v[mdp.start.clamp(min=0)]
        return torch.where(mdp.start >= 0, value, torch.full_like(value, float("-inf")))


def _state_values(q: torch.Tensor, states: torch.Tensor, v: torch.Tensor, temperature: float) -> None:
    """In place, for each state in ``states`` (the arcs' sources): v[s] = max (or soft max) of its arcs' q.

    Every arc leaving such a state must be among the given ones (a sweep level holds them all).
    """
    if temperature == 0.0:
        v.scatter_reduce_(0, states, q, reduce="amax", include_self=False)
        return
    peak = torch.full_like(v, float("-inf")).scatter_reduce_(0, states, q, reduce="amax", include_self=True)
    shift = peak[states]
    finite = torch.isfinite(shift)
    terms = torch.where(finite, torch.exp((q - shift.where(finite, torch.zeros_like(shift))) / temperature),
                        torch.zeros_like(q))
    total = torch.zeros_like(v).scatter_add_(0, states, terms)
    touched = torch.unique(states)
    p, t = peak[touched], total[touched]
    v[touched] = torch.where(torch.isfinite(p), p + temperature * torch.log(t), p)


def q_learning(mdp: LatticeMdp, rewards: torch.Tensor, config: Optional[QLearningConfig] = None,
               init: Optional[torch.Tensor] = None) -> QValues:
    """Run sweeps of the update rule until the Bellman residual is below the tolerance.

    ``rewards`` holds one reward per arc (the final arcs' included). ``init`` is the starting Q
    (default 0). Arcs that cannot reach a final state keep Q = -inf.
    """
    config = config or QLearningConfig()
    config.check()
    if rewards.shape != (mdp.num_arcs,):
        raise ValueError(f"expected {mdp.num_arcs} rewards (one per arc), got shape {tuple(rewards.shape)}")
    rewards = rewards.to(torch.float64)
    if not torch.isfinite(rewards.sum()):  # one pass: a sum is finite only if every term is
        raise ValueError("rewards must be finite")
    v = kernels.full(mdp.num_states, float("-inf"), rewards)
    finals = mdp.final[mdp.final >= 0]
    v[finals] = 0.0
    if kernels.compiled(rewards):
        return _compiled_sweeps(mdp, rewards, config, init, v)
    # Every arc is in the sweep order, so the first sweep writes all of them (no zero-fill).
    q = init.to(torch.float64).clone() if init is not None else torch.empty_like(rewards)
    # Arcs laid out level by level, so that each level is a contiguous slice; the
    # per-arc tensors are gathered once, not once per sweep.
    order, bounds = mdp.sweep_order
    # index_select, not advanced indexing: several times faster on the CPU for this many arcs.
    r_sorted, src_sorted, dest_sorted = (t.index_select(0, order) for t in (rewards, mdp.src, mdp.dest))
    if init is not None:
        q_sorted = q.index_select(0, order)
    elif config.alpha == 1.0:
        q_sorted = torch.empty_like(r_sorted)  # the first sweep assigns every entry
    else:
        q_sorted = torch.zeros_like(r_sorted)
    alpha, gamma = config.alpha, config.gamma
    residual = float("inf")
    sweeps = 0
    while sweeps < config.max_sweeps:
        sweeps += 1
        # From Q = 0 with alpha = 1 the update is Q = target exactly (0 + 1 * (t - 0) == t in floating
        # point), and gamma = 1 multiplies exactly: skipping those operations changes no bit.
        assign = sweeps == 1 and init is None and alpha == 1.0
        # The sweep's residual max |target - new Q| is the Bellman residual after it: a level's
        # targets use successors' values that the rest of the sweep no longer changes.
        residual = 0.0
        for begin, end in zip(bounds[:-1], bounds[1:]):
            next_v = v.index_select(0, dest_sorted[begin:end])
            target = r_sorted[begin:end] + (next_v if gamma == 1.0 else gamma * next_v)
            if assign:  # new Q == target: the residual is 0
                q_sorted[begin:end] = target
            else:
                old = q_sorted[begin:end]
                # A target of -inf (no path to the final state) is the arc's value; -inf - -inf is nan.
                new = torch.where(torch.isfinite(target), old + alpha * (target - old), target)
                q_sorted[begin:end] = new
                gap = (target - new).abs_().nan_to_num_(0.0)  # -inf - -inf: an arc that cannot finish
                residual = max(residual, float(gap.max()))
            _state_values(q_sorted[begin:end], src_sorted[begin:end].long(), v, config.temperature)
        if residual <= config.tolerance:
            break
    q.index_copy_(0, order, q_sorted)
    return QValues(q, v, sweeps, residual)


def _compiled_sweeps(mdp: LatticeMdp, rewards: torch.Tensor, config: QLearningConfig, init: Optional[torch.Tensor],
                     v: torch.Tensor) -> QValues:
    """``q_learning`` by the compiled kernel: arcs in decreasing order, no level order to build."""
    assign_first = init is None and config.alpha == 1.0
    if init is not None:
        q = init.to(torch.float64).clone()
    else:  # with alpha = 1 the first sweep assigns every entry
        q = kernels.empty(mdp.num_arcs)
        if not assign_first:
            q.zero_()
    arrays = (kernels.as_numpy(t) for t in (mdp.arc_splits, mdp.src, mdp.dest, rewards))
    sweeps, residual = kernels.q_sweeps(*arrays, q.numpy(), v.numpy(), config.alpha, config.gamma, config.temperature,
                                        config.tolerance, config.max_sweeps, assign_first)
    return QValues(q, v, sweeps, residual)


def greedy_paths(mdp: LatticeMdp, values: QValues) -> list[list[int]]:
    """Per FSA, the arcs (global indices) of the path that follows argmax Q from the start.

    Ties go to the arc with the lowest index. An FSA without a complete path gets [].
    The loop runs over path positions, vectorized over FSAs.
    """
    q = values.q
    best_q = torch.full((mdp.num_states,), float("-inf"), dtype=q.dtype, device=q.device)
    best_q.scatter_reduce_(0, mdp.src64, q, reduce="amax", include_self=True)
    is_best = values.live & (q == best_q.index_select(0, mdp.src))
    arc_ids = torch.arange(mdp.num_arcs, device=q.device)
    best_arc = torch.full((mdp.num_states,), mdp.num_arcs, dtype=torch.long, device=q.device)
    best_arc.scatter_reduce_(0, mdp.src64[is_best], arc_ids[is_best], reduce="amin", include_self=True)
    fsas = torch.nonzero(values.has_path(mdp)).squeeze(1)
    paths: list[list[int]] = [[] for _ in range(mdp.num_fsas)]
    current = mdp.start[fsas]
    steps = []
    while fsas.numel():
        arcs = best_arc[current]
        steps.append((fsas, arcs))
        current = mdp.dest[arcs].long()
        going = current != mdp.final[fsas]
        fsas, current = fsas[going], current[going]
    for fsa_ids, arcs in steps:
        for f, a in zip(fsa_ids.tolist(), arcs.tolist()):
            paths[f].append(a)
    return paths
