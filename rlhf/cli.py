"""Command-line conventions shared by every step's entry point."""

import argparse
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from rlhf import distributed


def str2bool(value: str) -> bool:
    """Kaldi-style booleans: exactly ``true`` or ``false``."""
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value == "true"


def add_stage_options(parser: argparse.ArgumentParser) -> None:
    """``--force`` (redo a complete step) and ``--log-dir`` (where the step's log file goes)."""
    parser.add_argument("--force", type=str2bool, default=False, help="redo even when complete (true/false)")
    parser.add_argument("--log-dir", type=Path, default=None, help="also write the log under this directory")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown for every option; the module docstring kept as written."""


def add_model_dirs(parser: argparse.ArgumentParser) -> None:
    """The positional directories of the steps that train or use a model, and ``--corpus``."""
    parser.add_argument("lang_dir", type=Path, help="e.g. data/lang_bpe_200 (tokens.txt; HLG.pt for hlg-1best)")
    parser.add_argument("fbank_dir", type=Path, help="cuts with features, e.g. data/fbank")
    parser.add_argument("exp_dir", type=Path, help="the model's directory, e.g. exp/ctc_tdnn")
    parser.add_argument("--corpus", default="synth", help="cut manifest name prefix")


def add_inference_options(parser: argparse.ArgumentParser, epoch_required: bool = True) -> None:
    """Which checkpoints to use (``--epoch N --avg K``, icefall's), batch size and device."""
    parser.add_argument("--epoch", type=int, required=epoch_required, help="use epoch-N.pt ...")
    parser.add_argument("--avg", type=int, default=1, help="... averaged with the K-1 epochs before it")
    parser.add_argument("--max-duration", type=float, default=200.0, help="seconds of audio per batch")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:0, ...")


def add_dataclass_options(parser: argparse.ArgumentParser, defaults: Any, prefix: str = "",
                          names: Optional[Iterable[str]] = None) -> None:
    """One ``--<prefix><field-name>`` option per field of a config dataclass (or per field in
    ``names``), defaulting to ``defaults``; ``parser`` may be an argument group."""
    keep = None if names is None else set(names)
    for f in fields(defaults):
        if keep is not None and f.name not in keep:
            continue
        value = getattr(defaults, f.name)
        parser.add_argument("--" + (prefix + f.name).replace("_", "-"), dest=prefix + f.name,
                            type=str2bool if isinstance(value, bool) else type(value),
                            default=value, help=f.name.replace("_", " ") + (" (true/false)" if isinstance(value, bool) else ""))


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = "",
                        names: Optional[Iterable[str]] = None) -> Any:
    """The config dataclass ``cls`` built from the options add_dataclass_options added
    (fields outside ``names`` keep their defaults)."""
    keep = None if names is None else set(names)
    return cls(**{f.name: getattr(args, prefix + f.name) for f in fields(cls) if keep is None or f.name in keep})


# Errors a user can fix (bad input, missing files, a directory in the way): one clear log
# line and exit status 1, not a traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError)


def add_distributed_options(parser: argparse.ArgumentParser) -> None:
    """``--dist-timeout``: how long a collective waits for the other ranks (launch: utils/launch.sh)."""
    parser.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT,
                        help="seconds a rank waits for the others in a collective before the job fails "
                             "(several processes only: utils/launch.sh --world-size N)")


def run_step(step: Callable[[], None], dist_timeout: Optional[float] = None, device_name: str = "auto") -> None:
    """Run a step's body, turning a user error into a logged message and exit status 1.

    With ``dist_timeout`` the step may run as one rank of several (under torchrun): it joins the
    process group first and leaves it after the step. A rank that fails exits non-zero and
    torchrun ends the others; one that waits on a dead or stuck peer fails after the timeout.
    """
    try:
        if dist_timeout is not None:
            distributed.init(dist_timeout, device_name)
        step()
        if dist_timeout is not None:
            distributed.shutdown()
    except USER_ERRORS as e:
        logging.error("%s", e)
        raise SystemExit(1)
