"""Compiled CPU kernels (numba) for the lattice sweeps (docs/compiled-kernels.md).

A sweep over a top-sorted FsaVec is one streaming pass over its arcs: k2 keeps each state's
arcs contiguous and every arc goes to a later state, so visiting states in decreasing order
(backward sweeps) or increasing order (forward sweeps) meets every state after, or before, all
the states it depends on. The torch code of rlhf.rl does the same sweeps a level at a time with
tensor temporaries; it stays as the GPU path and the reference, and tests/test_kernels.py
holds the two equal. Each kernel does the torch code's arithmetic in the torch code's order
(sums from 0 in arc order), so only exp and log may differ, by an ulp.

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


_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


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
