"""Small random lattices and brute-force path enumeration: the ground truth for the RL tests."""

import math
import random
from dataclasses import dataclass

import k2
import torch

from rlhf.rl.rewards import edit_distance


def random_lattice(rng: random.Random, num_states: int = 7, num_frames: int = 6, vocab: int = 5,
                   extra_arcs: int = 6) -> k2.Fsa:
    """A connected, top-sorted, acyclic Fsa with several paths to the final state.

    Arcs carry a CTC ``labels`` (blank = 0) and a ``frame_idx`` in [0, num_frames); ``aux_labels``
    are ragged output labels: none (epsilon), one, or sometimes two per arc.
    """
    final = num_states - 1
    arcs = set()
    for s in range(1, final):  # every state reachable from an earlier one ...
        arcs.add((rng.randrange(0, s), s))
    for s in range(0, final):  # ... and able to go on to a later one
        arcs.add((s, rng.randrange(s + 1, final + 1)))
    for _ in range(extra_arcs):
        s = rng.randrange(0, final)
        arcs.add((s, rng.randrange(s + 1, final + 1)))
    rows, outputs, frames = [], [], []
    for src, dest in sorted(arcs):
        for _ in range(1 + (rng.random() < 0.2)):  # sometimes parallel arcs
            if dest == final:
                rows.append([src, dest, -1, 0])
                outputs.append([-1])
                frames.append(num_frames)
                break
            rows.append([src, dest, rng.randrange(0, vocab), 0])
            r = rng.random()
            outputs.append([] if r < 0.4 else [rng.randrange(1, vocab + 1)] if r < 0.85 else
                           [rng.randrange(1, vocab + 1), rng.randrange(1, vocab + 1)])
            frames.append(rng.randrange(0, num_frames))
    fsa = k2.Fsa(torch.tensor(rows, dtype=torch.int32))
    fsa.aux_labels = k2.RaggedTensor(outputs)
    fsa.frame_idx = torch.tensor(frames, dtype=torch.int32)
    fsa.scores = torch.randn(len(rows))
    return fsa


@dataclass
class Path:
    arcs: list[int]      # arc indices within the FSA
    outputs: list[int]   # output labels along it


def enumerate_paths(fsa: k2.Fsa, start: int = 0) -> list[Path]:
    """Every path from ``start`` to the final state (depth-first; for small lattices only)."""
    arcs = fsa.arcs.values()[:, :2].tolist()
    outputs = fsa.aux_labels.tolist()
    final = max(d for _, d in arcs)
    leaving: dict[int, list[int]] = {}
    for i, (s, _) in enumerate(arcs):
        leaving.setdefault(s, []).append(i)
    paths = []

    def walk(state: int, taken: list[int]) -> None:
        if state == final:
            paths.append(Path(list(taken), [w for a in taken for w in outputs[a] if w > 0]))
            return
        for a in leaving.get(state, []):
            walk(arcs[a][1], taken + [a])

    walk(start, [])
    return paths


def frame_return(path: Path, rewards: list[float], gamma: float = 1.0) -> float:
    return sum(rewards[a] * gamma ** k for k, a in enumerate(path.arcs))


def edit_return(path: Path, reference: list[int]) -> float:
    return -float(edit_distance(path.outputs, reference))


def logsumexp(values: list[float], temperature: float) -> float:
    peak = max(values)
    return peak + temperature * math.log(sum(math.exp((v - peak) / temperature) for v in values))
