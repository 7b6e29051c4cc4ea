"""Checkpoints ``exp/<name>/epoch-N.pt``: save, load with a configuration check, and average.

A checkpoint carries the model configuration, so loading it into a model built with other
options fails with a message naming the options that differ, not a shape error.
"""

import hashlib
from pathlib import Path
from typing import Any, Optional

import torch

from rlhf.model import CtcModel, ModelConfig
from rlhf.stage import save_torch


def checkpoint_path(exp_dir: Path, epoch: int) -> Path:
    return Path(exp_dir) / f"epoch-{epoch}.pt"


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
    config = model.config
    total = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}
    for p in paths[:-1]:
        state = load_checkpoint(p, expected=config)["model"]
        for k, v in state.items():
            if v.is_floating_point():
                total[k] += v.double()
    model.load_state_dict({k: (v / avg).to(model.state_dict()[k].dtype) if v.is_floating_point() else v
                           for k, v in total.items()})
    return model


def model_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's parameters and buffers: ties derived files (lattices) to the model that made them."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
