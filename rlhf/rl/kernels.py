"""Compiled CPU kernels (numba) for the lattice sweeps (docs/compiled-kernels.md).

A sweep over a top-sorted FsaVec is one streaming pass over its arcs: k2 keeps each state's
arcs contiguous and every arc goes to a later state, so visiting states in decreasing order
(backward sweeps) or increasing order (forward sweeps) meets every state after, or before, all
the states it depends on. The torch code of rlhf.rl does the same sweeps a level at a time with
tensor temporaries; it stays as the GPU path and the reference, and tests/test_kernels.py
holds the two equal. Each kernel does the torch code's arithmetic in the torch code's order
(sums from 0 in arc order): results differ only where exp and log do (by an ulp), and where k2,
which the torch code calls for the posteriors, adds log-probabilities its own way.

The compiled path runs on CPU tensors unless ``RLHF_SWEEPS=torch``. Kernels are compiled on
first use and cached beside this file (``cache=True``): a few seconds once, then a cache load.
"""

import contextlib
import math
import os
from typing import Iterator

import numba
import numpy as np
import torch

SWEEPS_ENV = "RLHF_SWEEPS"
SWEEPS = ("auto", "torch")  # auto: compiled on CPU tensors, torch elsewhere; torch: torch everywhere


def compiled(tensor: torch.Tensor) -> bool:
    """Whether a sweep over ``tensor``'s lattices runs the compiled kernels."""
    choice = os.environ.get(SWEEPS_ENV, "auto")
    if choice not in SWEEPS:
        raise ValueError(f"{SWEEPS_ENV}={choice!r}; choose from {', '.join(SWEEPS)}")
    return choice == "auto" and tensor.device.type == "cpu"


@contextlib.contextmanager
def sweeps(choice: str) -> Iterator[None]:
    """Run the enclosed code with ``RLHF_SWEEPS=choice`` (the benchmarks and tests compare both)."""
    if choice not in SWEEPS:
        raise ValueError(f"unknown sweeps {choice!r}; choose from {', '.join(SWEEPS)}")
    before = os.environ.get(SWEEPS_ENV)
    os.environ[SWEEPS_ENV] = choice
    try:
        yield
    finally:
        if before is None:
            del os.environ[SWEEPS_ENV]
        else:
            os.environ[SWEEPS_ENV] = before


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view (no copy when contiguous) of a CPU tensor, for a kernel to read or write."""
    return tensor.detach().contiguous().numpy()


def empty(size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A new CPU tensor for a kernel's output, allocated by numpy: numpy asks Linux for huge pages
    on large arrays and torch does not, and faulting in 4 KB pages of a fresh tensor took longer
    than the Q-learning sweep that fills it."""
    return torch.from_numpy(np.empty(size, dtype=torch.empty(0, dtype=dtype).numpy().dtype))


def full(size: int, value: float, like: torch.Tensor) -> torch.Tensor:
    """A new float64 tensor of ``value`` on ``like``'s device, from ``empty`` where the kernels run."""
    out = empty(size) if compiled(like) else torch.empty(size, dtype=torch.float64, device=like.device)
    return out.fill_(value)


_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def arc_dests(arcs, src, dest):
    """Each arc's global destination state: its source plus (local destination - local source)."""
    for a in range(src.size):
        dest[a] = src[a] + (arcs[a, 1] - arcs[a, 0])


@_jit
def _q_update(q, a, target, alpha, assign):
    """Q(a) after one update toward ``target``, and the gap |target - new Q| the torch sweep counts."""
    if assign:
        return target, 0.0
    old = q[a]
    new = old + alpha * (target - old) if math.isfinite(target) else target  # -inf: no path to the final state
    gap = abs(target - new)
    if gap != gap:  # nan_to_num, as in torch: nan 0, inf the largest double
        gap = 0.0
    elif gap == np.inf:
        gap = np.finfo(np.float64).max
    return new, gap


@_jit
def _exact_sweep(src, dest, rewards, q, v):
    """One sweep of Q = r + V(dest), V(s) = max Q (V(s) given as -inf): as lean as a copy."""
    for a in range(rewards.size - 1, -1, -1):
        new = rewards[a] + v[dest[a]]
        q[a] = new
        s = src[a]
        v[s] = max(v[s], new)


@_jit
def q_sweeps(arc_splits, src, dest, rewards, q, v, alpha, gamma, temperature, tolerance, max_sweeps, assign_first):
    """Sweeps of the Q update over every arc in decreasing order, until the residual is at most
    ``tolerance``; ``q`` and ``v`` in place (``v`` given: 0 at final states, -inf elsewhere).

    Returns (sweeps, residual). ``assign_first``: the first sweep sets Q = target (alpha = 1
    from Q = 0, exactly what the update would compute). The hard max goes arc by arc with
    V(s) = max(V(s), Q) from -inf, never branching on state boundaries (a mispredicted branch
    per state doubled the time); the soft value takes a state's arcs together (their max, then
    a sum of exponentials in arc order, as the torch code).
    """
    num_arcs = rewards.size
    sweeps = 0
    residual = np.inf
    while sweeps < max_sweeps:
        sweeps += 1
        assign = assign_first and sweeps == 1
        residual = 0.0
        if temperature == 0.0:
            if sweeps > 1:
                for a in range(num_arcs):
                    v[src[a]] = -np.inf
            if assign and gamma == 1.0:  # stage 6's case
                _exact_sweep(src, dest, rewards, q, v)
            else:
                for a in range(num_arcs - 1, -1, -1):
                    new, gap = _q_update(q, a, rewards[a] + gamma * v[dest[a]], alpha, assign)
                    residual = max(residual, gap)
                    q[a] = new
                    s = src[a]
                    v[s] = max(v[s], new)
        else:
            for s in range(arc_splits.size - 2, -1, -1):
                begin, end = arc_splits[s], arc_splits[s + 1]
                if begin == end:
                    continue
                peak = -np.inf
                for a in range(begin, end):
                    new, gap = _q_update(q, a, rewards[a] + gamma * v[dest[a]], alpha, assign)
                    residual = max(residual, gap)
                    q[a] = new
                    peak = max(peak, new)
                if not math.isfinite(peak):
                    v[s] = peak
                else:
                    total = 0.0
                    for a in range(begin, end):
                        total += math.exp((q[a] - peak) / temperature)
                    v[s] = peak + temperature * math.log(total)
        if residual <= tolerance:
            break
    return sweeps, residual


@_jit
def forward_returns(src, dest, rewards, forward):
    """In place, arcs in increasing order: forward(dest) = max(forward(dest), forward(src) + r),
    the best return from the start (``forward`` given: 0 at start states, -inf elsewhere)."""
    for a in range(src.size):
        forward[dest[a]] = max(forward[dest[a]], forward[src[a]] + rewards[a])


@_jit
def _prob(x):
    """exp(x) with torch's nan_to_num: an arc at an unreachable or dead state has probability 0."""
    p = math.exp(x)
    if p != p:
        return 0.0
    if p == np.inf:
        return np.finfo(np.float64).max
    return p


@_jit
def arc_posteriors(state_splits, arc_splits, src, dest, weights, alpha, beta, log_total, occupancy):
    """Log-semiring forward and backward scores, total scores and arc posteriors, as
    rlhf.rl.objective.posteriors gets them from k2 (outputs in place).

    Like k2's, the sweeps add the weights rounded to float32 (k2 keeps float32 scores) in
    double; the posteriors use the weights as given. The forward sweep pushes each arc into
    its destination as a running (max, sum of exp) pair: one exp per arc, no entering-arc index.
    """
    num_states = alpha.size
    peak, total = alpha, beta  # until a state's alpha is final: the pair of the sweep (beta comes later)
    peak[:] = -np.inf
    total[:] = 0.0
    for f in range(state_splits.size - 1):
        if state_splits[f + 1] > state_splits[f]:
            peak[state_splits[f]] = 0.0
            total[state_splits[f]] = 1.0
    for s in range(num_states):
        alpha[s] = peak[s] + math.log(total[s]) if total[s] > 0.0 else -np.inf  # peak[s] is alpha[s]
        if alpha[s] == -np.inf:
            continue
        for a in range(arc_splits[s], arc_splits[s + 1]):
            x = alpha[s] + np.float64(np.float32(weights[a]))
            d = dest[a]
            if x > peak[d]:
                total[d] = total[d] * math.exp(peak[d] - x) + 1.0
                peak[d] = x
            else:
                total[d] += math.exp(x - peak[d])
    beta[:] = -np.inf  # stays at a dead end (no arcs, not final)
    for f in range(state_splits.size - 1):
        if state_splits[f + 1] > state_splits[f]:
            beta[state_splits[f + 1] - 1] = 0.0
    for s in range(num_states - 1, -1, -1):
        begin, end = arc_splits[s], arc_splits[s + 1]
        if begin == end:
            continue
        best = -np.inf
        for a in range(begin, end):
            best = max(best, np.float64(np.float32(weights[a])) + beta[dest[a]])
        if best == -np.inf:
            beta[s] = best
            continue
        acc = 0.0
        for a in range(begin, end):
            acc += math.exp(np.float64(np.float32(weights[a])) + beta[dest[a]] - best)
        beta[s] = best + math.log(acc)
    for f in range(state_splits.size - 1):
        first, end = state_splits[f], state_splits[f + 1]
        if end == first:
            log_total[f] = -np.inf
            continue
        log_total[f] = alpha[end - 1]
        for a in range(arc_splits[first], arc_splits[end]):
            occupancy[a] = _prob(alpha[src[a]] + np.float64(weights[a]) + beta[dest[a]] - log_total[f])


@_jit
def fsa_sums(state_splits, arc_splits, x, y, out):
    """out[f] = sum over the arcs of FSA f of x * y, from 0 in arc order (as torch's index_add_)."""
    for f in range(state_splits.size - 1):
        acc = 0.0
        for a in range(arc_splits[state_splits[f]], arc_splits[state_splits[f + 1]]):
            acc += x[a] * y[a]
        out[f] = acc


@_jit
def expected_advantage_grad(state_splits, arc_splits, src, dest, weights, alpha, beta, occupancy, values, per_fsa,
                            grad_output, before, after, grad):
    """d(sum_f grad_output[f] J_f)/dw into ``grad``: the expectation-semiring sweeps of
    rlhf.rl.objective.expected_returns, then gamma(a) (E[sum A | a] - J) per arc.

    ``before`` (forward, arcs in increasing order) and ``after`` (backward, a state's arcs
    summed in arc order as torch's index_add_ does), per state and overwritten, are the expected
    sums of ``values`` before a state given the path reaches it, and after it given the path
    leaves from it.
    """
    before[:] = 0.0
    for a in range(src.size):
        s, d = src[a], dest[a]
        before[d] += _prob(np.float64(weights[a]) + alpha[s] - alpha[d]) * (before[s] + values[a])
    for s in range(alpha.size - 1, -1, -1):
        acc = 0.0
        for a in range(arc_splits[s], arc_splits[s + 1]):
            d = dest[a]
            acc += _prob(np.float64(weights[a]) + beta[d] - beta[s]) * (values[a] + after[d])
        after[s] = acc
    for f in range(state_splits.size - 1):
        for a in range(arc_splits[state_splits[f]], arc_splits[state_splits[f + 1]]):
            given_arc = before[src[a]] + values[a] + after[dest[a]]
            grad[a] = occupancy[a] * (given_arc - per_fsa[f]) * grad_output[f]


@_jit
def sampling_keys(arc_splits, dest, weights, beta, key):
    """The search keys of rlhf.rl.objective.sample_paths: src(a) + pi(a | src) summed over the
    state's arcs up to a (at most 1), pi = exp(w + beta(dest) - beta(src)).

    The running sum runs over the whole arc array, as torch.cumsum does there, so that the keys,
    and hence the sampled arcs, are the torch code's.
    """
    running = 0.0
    for s in range(arc_splits.size - 1):
        base = running
        for a in range(arc_splits[s], arc_splits[s + 1]):
            running += _prob(np.float64(weights[a]) + beta[dest[a]] - beta[s])
            key[a] = np.float64(s) + min(running - base, 1.0)


@_jit
def walk_paths(key, arc_splits, dest, current, final, path_ids, num_walking, uniforms, out_arcs, out_paths):
    """Advance the walking paths one arc per uniform, a step of every walking path at a time
    (the order in which the torch code draws them), while ``uniforms`` holds a whole step.

    A path at state s takes its first arc a with key(a) >= s + u (the last arc if none).
    ``current``, ``final``, ``path_ids``: the walking paths, compacted in place. Returns the
    uniforms used (= arcs written to ``out_arcs``/``out_paths``) and the paths still walking.
    """
    used = 0
    while num_walking > 0 and used + num_walking <= uniforms.size:
        kept = 0
        for i in range(num_walking):
            s = current[i]
            x = np.float64(s) + uniforms[used + i]
            a, end = arc_splits[s], arc_splits[s + 1]
            while a < end and key[a] < x:
                a += 1
            a = min(a, end - 1)
            out_arcs[used + i] = a
            out_paths[used + i] = path_ids[i]
            if dest[a] != final[i]:
                current[kept], final[kept], path_ids[kept] = dest[a], final[i], path_ids[i]
                kept += 1
        used += num_walking
        num_walking = kept
    return used, num_walking


@_jit
def group_by_path(arcs, paths, num_paths, sorted_arcs, sorted_paths):
    """Arcs and path ids ordered by path, each path's arcs in the order taken: a stable counting
    sort into outputs the caller allocates."""
    start = np.zeros(num_paths + 1, dtype=np.int64)
    for p in paths:
        start[p + 1] += 1
    for p in range(num_paths):
        start[p + 1] += start[p]
        sorted_paths[start[p]:start[p + 1]] = p
    for i in range(arcs.size):
        p = paths[i]
        sorted_arcs[start[p]] = arcs[i]
        start[p] += 1
