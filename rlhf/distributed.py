"""torch.distributed for the heavy stages (3, 5, 6, 7): one process per rank, launched by torchrun
(docs/distributed.md).

A step run as plain ``python``/console script is one process (world size 1) and never touches
torch.distributed. Under ``torchrun`` (utils/launch.sh, cmd.sh) the environment names the rank
and world size; ``init`` joins the process group (gloo on CPU, NCCL on GPU) with a collective
timeout, so a rank that hangs or dies ends the job with an error rather than a hang. Every
collective here is called by all ranks in the same order; decisions that depend on a clock
(time budgets) are taken by rank 0 and broadcast.
"""

import contextlib
import datetime
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from tqdm import tqdm

from rlhf.model import pick_device

T = TypeVar("T")

DEFAULT_TIMEOUT = 600.0  # seconds a collective may wait for the slowest rank


@dataclass(frozen=True)
class Context:
    """This process's place in the job."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every world_size-th one, from index ``rank``."""
        return list(items[self.rank::self.world_size])

    def device(self, name: str) -> torch.device:
        """``--device`` as rlhf.model.pick_device reads it, but ``auto`` on GPUs is this rank's
        GPU (by local rank)."""
        if name == "auto" and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return pick_device(name)


SINGLE = Context()
_context = SINGLE


def context() -> Context:
    """The context set by ``init`` (world size 1 before, or without torchrun)."""
    return _context


def from_environment() -> Context:
    """The rank and world size torchrun put in the environment (world size 1 without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE={world_size} in the environment; it must be >= 1")
    return Context(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def init(timeout: float = DEFAULT_TIMEOUT, device_name: str = "auto") -> Context:
    """Join the job's process group when launched with world size > 1; returns this rank's context.

    gloo on CPU, NCCL on GPU. ``timeout`` (seconds) bounds every collective: a rank waiting for a
    dead or stuck peer raises after it instead of hanging.
    """
    global _context
    ctx = from_environment()
    if ctx.enabled and not dist.is_initialized():
        if timeout <= 0:
            raise ValueError(f"--dist-timeout must be > 0 seconds, got {timeout}")
        device = ctx.device(device_name)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(device)
            # Without this a NCCL collective ignores the timeout and a dead peer hangs the job.
            os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        logging.info("rank %d of %d (local rank %d) joined the %s process group, collective timeout %.0f s",
                     ctx.rank, ctx.world_size, ctx.local_rank, backend, timeout)
    _context = ctx
    return ctx


def shutdown() -> None:
    """Leave the process group (all ranks wait for each other first)."""
    global _context
    if dist.is_initialized():
        dist.barrier()
        # torch 1.13's gloo worker thread frees a finished collective's tensors under the GIL,
        # and the process group's destructor joins that thread while holding the GIL (fixed in
        # later torch, pytorch#56297): a destructor that runs right after the last collective
        # (DistributedDataParallel's, say) deadlocks. Sleeping releases the GIL so the worker
        # can finish first.
        time.sleep(0.2)
        dist.destroy_process_group()
    _context = SINGLE


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks, in place (and returned); a no-op in one process."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_floats(*values: float) -> list[float]:
    """Sums over ranks of a few Python numbers, in float64 (one collective)."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_backend() == "nccl":
        t = t.cuda()
    return all_reduce_sum(t).tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. a decision that depends on rank 0's clock)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def main_decides(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 only (it may touch shared files), its result on every rank."""
    return broadcast_object(decide() if context().is_main else None)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_parameters(params: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite every rank's ``params`` with rank ``src``'s, so ranks can never drift apart."""
    if dist.is_initialized():
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=src)


@contextlib.contextmanager
def shared_output(path: Path) -> Iterator[Path]:
    """A directory that every rank writes its own files into, renamed to ``path`` once all ranks
    are done (rlhf.stage.atomic_output for a job of several processes).

    The temporary ``.tmp.<name>`` beside ``path`` is made empty by rank 0 before any rank writes;
    after a failure it is left for the next run, which clears it, and ``path`` is untouched.
    Ranks share the file system (as Kaldi's jobs do).
    """
    ctx = context()
    path = Path(path)
    tmp = path.with_name(f".tmp.{path.name}")
    if ctx.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier()
    yield tmp
    barrier()
    if ctx.is_main:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    barrier()


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """tqdm on rank 0 only (one bar per job, not one per process)."""
    return tqdm(iterable, disable=not context().is_main, dynamic_ncols=True, **kwargs)
