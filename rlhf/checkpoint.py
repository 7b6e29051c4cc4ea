"""Checkpoints ``exp/<name>/epoch-N.pt``: save, load with a configuration check, and average.

A checkpoint carries the model configuration, so loading it into a model built with other
options fails with a message naming the options that differ, not a shape error.
"""

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from rlhf.model import CtcModel, ModelConfig
from rlhf.stage import save_torch


# Names the epoch (and --avg) that stage 3 selected, which stages 4-7 and rlhf-transcribe use by
# default (utils/recipe_lib.sh: selected_epoch); written when training completes.
SELECTED = "selected.json"


def checkpoint_path(exp_dir: Path, epoch: int) -> Path:
    return Path(exp_dir) / f"epoch-{epoch}.pt"


# Where training moves the checkpoints of an earlier run that it would not overwrite (set_aside_checkpoints).
EARLIER_RUN_DIR = "earlier-run"


def checkpoint_epochs(exp_dir: Path) -> list[int]:
    """The N of every ``epoch-N.pt`` in ``exp_dir``, in increasing order."""
    stems = (p.stem.split("-", 1)[1] for p in Path(exp_dir).glob("epoch-*.pt"))
    return sorted(int(s) for s in stems if s.isdigit())


def set_aside_checkpoints(exp_dir: Path, first_epoch: int) -> list[Path]:
    """Move ``epoch-N.pt`` for N >= ``first_epoch`` into ``exp_dir/earlier-run/`` (replacing what an
    older run left there), and say so: a training run starting at ``first_epoch`` writes those
    epochs itself, and one that stops before an earlier run's last epoch would otherwise leave that
    run's later checkpoints to be picked as "the last epoch" (rlhf-transcribe) or averaged with the
    new ones (``--avg``). Returns the moved files' new paths.
    """
    exp_dir = Path(exp_dir)
    epochs = [e for e in checkpoint_epochs(exp_dir) if e >= first_epoch]
    if not epochs:
        return []
    aside = exp_dir / EARLIER_RUN_DIR
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir()
    moved = []
    for e in epochs:
        moved.append(aside / checkpoint_path(exp_dir, e).name)
        os.replace(checkpoint_path(exp_dir, e), moved[-1])
    logging.warning("%s held checkpoints of an earlier run (epoch-%s.pt); moved them to %s, so they are neither "
                    "used nor averaged with this run's (delete that directory when you do not need them; "
                    "to continue a run instead, use --start-epoch N)", exp_dir,
                    f"{{{epochs[0]}..{epochs[-1]}}}" if len(epochs) > 1 else epochs[0], aside)
    return moved
def averaged_checkpoints(exp_dir: Path, epoch: int, avg: int) -> list[Path]:
    """The checkpoints ``--epoch N --avg K`` names: epochs N-K+1 .. N; ValueError when that range is not
    within 1 .. N (checked before any file name is made from it)."""
    if epoch < 1:
        raise ValueError(f"--epoch must be at least 1, got {epoch}")
    if not 1 <= avg <= epoch:
        raise ValueError(f"--avg must be between 1 and --epoch ({epoch}), got {avg}: it averages epochs "
                         f"N-K+1 .. N of --epoch N --avg K")
    return [checkpoint_path(exp_dir, e) for e in range(epoch - avg + 1, epoch + 1)]


def save_checkpoint(path: Path, model: CtcModel, **extra: Any) -> None:
    """Write atomically: an interrupted save never leaves a truncated epoch-N.pt."""
    state = {"model_config": model.config.to_dict(), "model": model.state_dict(), **extra}
    save_torch(state, path)


def load_checkpoint(path: Path, expected: Optional[ModelConfig] = None) -> dict:
    """Load a checkpoint (onto the CPU); with ``expected``, refuse one made for another configuration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    state = torch.load(path, map_location="cpu")
    if "model_config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a checkpoint of this toolkit (no model_config/model entries)")
    if expected is not None:
        found = ModelConfig.from_dict(state["model_config"])
        diffs = [f"{k}: checkpoint has {v!r}, options say {getattr(expected, k)!r}"
                 for k, v in vars(found).items() if getattr(expected, k) != v]
        if diffs:
            raise ValueError(f"{path} was trained with another model configuration ({'; '.join(diffs)}). "
                             f"Use the options it was trained with, or another --exp-dir.")
    return state


def load_model(path: Path) -> CtcModel:
    """The model stored in a checkpoint (its configuration comes from the checkpoint)."""
    state = load_checkpoint(path)
    model = CtcModel(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model


def average_checkpoints(exp_dir: Path, epoch: int, avg: int) -> CtcModel:
    """The parameter average of epochs ``epoch-avg+1 .. epoch`` (icefall's --epoch/--avg)."""
    paths = averaged_checkpoints(exp_dir, epoch, avg)
    model = load_model(paths[-1])
    earlier = [load_checkpoint(p, expected=model.config)["model"] for p in paths[:-1]]
    model.load_state_dict(average_states(model.state_dict(), earlier))
    return model


def average_states(last: dict, earlier: list[dict]) -> dict:
    """The average of state dicts (float tensors summed in float64, ``last`` first, then
    ``earlier`` in order; other tensors from ``last``): stage 3 judges an epoch with exactly the
    weights that average_checkpoints gives decoding."""
    total = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in last.items()}
    for state in earlier:
        for k, v in state.items():
            if v.is_floating_point():
                total[k] += v.double()
    n = 1 + len(earlier)
    return {k: (v / n).to(last[k].dtype) if v.is_floating_point() else v for k, v in total.items()}


def model_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's parameters and buffers: ties derived files (lattices) to the model that made them."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
