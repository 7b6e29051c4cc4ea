"""What the lattice-sweep benchmarks (rlhf/bin/bench_*.py) share: loading a split's lattices,
best-of timing, the machine's load and memory bandwidth, and writing the report."""

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

import k2
import numpy as np
import torch

from rlhf.lattice_shards import LatticeShard, shard_paths
from rlhf.stage import atomic_output


def load_lattices(split_dir: Path, max_shards: Optional[int]) -> tuple[k2.Fsa, list[torch.Tensor]]:
    """The shards' lattices as one FsaVec, with their forced alignments."""
    shards = [LatticeShard.load(p) for p in shard_paths(split_dir)[:max_shards]]
    return k2.cat([s.lattice for s in shards]), [a for s in shards for a in s.alignments]


def timed(fn: Callable[[], object], repeats: int, setup: Callable[[], None] = lambda: None
          ) -> tuple[list[float], object]:
    """Seconds of each of ``repeats`` calls (``setup`` untimed before each), and the last call's result."""
    seconds, result = [], None
    for _ in range(repeats):
        setup()
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def load_average() -> float:
    """The 1-minute load average: other work on the cores makes timings slower and noisier."""
    return os.getloadavg()[0]


def copy_seconds(arrays: list[np.ndarray], repeats: int) -> dict:
    """The best time of a plain numpy copy of ``arrays``: into new arrays (which, like a kernel's
    fresh outputs, pay the page faults of new memory) and into arrays already written once.
    A streaming pass over the same bytes cannot be faster than this: the memory-bandwidth bound."""
    fresh, _ = timed(lambda: [a.copy() for a in arrays], repeats)
    outputs = [np.empty_like(a) for a in arrays]
    for a, out in zip(arrays, outputs):
        np.copyto(out, a)
    warm, _ = timed(lambda: [np.copyto(out, a) for a, out in zip(arrays, outputs)], repeats)
    return {"bytes": sum(a.nbytes for a in arrays), "fresh_seconds": min(fresh), "warm_seconds": min(warm)}


def write_report(out: Optional[Path], text: str, result: dict) -> None:
    """Print the table; with ``out``, also write it there and the numbers to a .json beside it."""
    if out is not None:
        with atomic_output(out) as tmp:
            tmp.write_text(text)
        with atomic_output(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
