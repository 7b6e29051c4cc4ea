"""The seed's per-arc Q-learning loop in plain Python: the reference for tests and the benchmark.

Deliberately literal: for every state in reverse topological order (k2 lattices are
top-sorted, so decreasing state number), for every arc leaving it,

    Q[a] = Q[a] + alpha * (r[a] + gamma * max(Q[b] for b leaving dest(a)) - Q[a])

with 0 at the final state, repeated until the sweep's largest |target - Q| (the Bellman
residual after it: successors are final by the time an arc is updated) is below the tolerance.
The vectorized ``rlhf.rl.qlearning.q_learning`` must give identical values (float64).

It lives outside the library (``rlhf.rl``) because nothing there may run it: it is the oracle
the tests check the vectorized code against and the speed baseline of
``rlhf/bin/bench_qlearning.py``, which is why it is installed with the package rather than
kept under tests/.
"""

import math

import k2

from rlhf.rl.qlearning import QLearningConfig


def q_learning_loop(fsas: k2.Fsa, rewards: list[float], config: QLearningConfig) -> tuple[list[float], int, float]:
    """Q per arc (global arc order of the FsaVec), number of sweeps and the final residual."""
    arcs = fsas.arcs.values()[:, :2].tolist()
    state_splits = fsas.arcs.shape().row_splits(1).tolist()
    arc_splits = fsas.arcs.shape().row_splits(2).tolist()
    out_arcs = [range(arc_splits[s], arc_splits[s + 1]) for s in range(len(arc_splits) - 1)]
    is_final = [False] * len(out_arcs)
    dest = []  # global destination state of each arc, in arc order (arcs are grouped by source state)
    for f in range(len(state_splits) - 1):
        first, end = state_splits[f], state_splits[f + 1]
        if end > first:
            is_final[end - 1] = True
        for s in range(first, end):
            dest += [first + arcs[a][1] for a in out_arcs[s]]

    def best_next(state: int, q: list[float]) -> float:
        if is_final[state]:
            return 0.0
        return max((q[b] for b in out_arcs[state]), default=-math.inf)

    alpha, gamma = config.alpha, config.gamma
    q = [0.0] * len(arcs)
    sweeps, residual = 0, math.inf
    while sweeps < config.max_sweeps:
        sweeps += 1
        residual = 0.0
        for s in reversed(range(len(out_arcs))):
            for a in out_arcs[s]:
                target = rewards[a] + gamma * best_next(dest[a], q)
                # A target of -inf (no path to the final state) is the arc's value; -inf - -inf is nan.
                q[a] = target if target == -math.inf else q[a] + alpha * (target - q[a])
                if q[a] != -math.inf:  # the residual of arcs that can finish
                    residual = max(residual, abs(target - q[a]))
        if residual <= config.tolerance:
            break
    return q, sweeps, residual
