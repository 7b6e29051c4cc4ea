"""Command-line conventions shared by every program in rlhf/bin.

Imports torch (through rlhf.distributed) only in the functions that need it, so that a program
without torch (stage 0's synthesizer, whose worker processes re-import it) starts light.
"""

import argparse
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from rlhf.log import describe_error, is_user_os_error


def str2bool(value: str) -> bool:
    """Kaldi-style booleans: exactly ``true`` or ``false``."""
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value == "true"


def add_stage_options(parser: argparse.ArgumentParser, log_dir: str = "") -> None:
    """``--force`` (redo a complete step) and ``--log-dir`` (where the step's log file goes;
    ``log_dir`` names the directory used without the option, none by default)."""
    parser.add_argument("--force", type=str2bool, default=False,
                        help="redo the step even when its outputs are complete for the same options and inputs "
                             "(true/false)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="also write the log to a file in this directory (default: " +
                             (log_dir or "none, the console only") + ")")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default after its help (an option whose default is None says in its help
    what it falls back to); the program's docstring kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help
        if isinstance(action.default, bool):  # as the option is written: true or false
            return f"{action.help} (default: {str(action.default).lower()})"
        return super()._get_help_string(action)


def add_model_dirs(parser: argparse.ArgumentParser) -> None:
    """The positional directories of the steps that train or use a model, and ``--corpus``."""
    parser.add_argument("lang_dir", type=Path,
                        help="the lang dir (tokens.txt, words.txt; HLG.pt once compiled), e.g. data/lang_bpe_200")
    parser.add_argument("fbank_dir", type=Path,
                        help="the cut manifests with features of stage 2, e.g. data/fbank")
    parser.add_argument("exp_dir", type=Path, help="the model's directory (epoch-N.pt), e.g. exp/ctc_tdnn")
    parser.add_argument("--corpus", default="synth",
                        help="name prefix of the cut manifests: <fbank_dir>/<corpus>_cuts_<split>.jsonl.gz")


def add_inference_options(parser: argparse.ArgumentParser, epoch_required: bool = True) -> None:
    """Which checkpoints to use (``--epoch N --avg K``, icefall's), batch size and device."""
    parser.add_argument("--epoch", type=int, required=epoch_required, help="use the model of epoch-N.pt ...")
    parser.add_argument("--avg", type=int, default=1,
                        help="... averaged (parameter by parameter) with the K-1 epochs before it")
    parser.add_argument("--max-duration", type=float, default=200.0, help="seconds of audio per decoding batch")
    add_device_option(parser)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``, as rlhf.model.pick_device reads it."""
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (the GPU when there is one, else the CPU), cpu, cuda:0, ...")


def add_dataclass_options(parser: argparse.ArgumentParser, defaults: Any, prefix: str = "",
                          names: Optional[Iterable[str]] = None) -> None:
    """One ``--<prefix><field-name>`` option per field of a config dataclass (or per field in
    ``names``), defaulting to ``defaults``; ``parser`` may be an argument group.

    The option's help and choices are the field's metadata, written where the field is defined:
    ``field(default=..., metadata={"help": "...", "choices": (...)})``.
    """
    keep = None if names is None else set(names)
    for f in fields(defaults):
        if keep is not None and f.name not in keep:
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{type(defaults).__name__}.{f.name} has no help in its field metadata")
        value = getattr(defaults, f.name)
        boolean = isinstance(value, bool)
        parser.add_argument("--" + (prefix + f.name).replace("_", "-"), dest=prefix + f.name,
                            type=str2bool if boolean else type(value), default=value,
                            choices=f.metadata.get("choices"),
                            help=f.metadata["help"] + (" (true/false)" if boolean else ""))


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = "",
                        names: Optional[Iterable[str]] = None) -> Any:
    """The config dataclass ``cls`` built from the options add_dataclass_options added
    (fields outside ``names`` keep their defaults)."""
    keep = None if names is None else set(names)
    return cls(**{f.name: getattr(args, prefix + f.name) for f in fields(cls) if keep is None or f.name in keep})


# Errors a user can fix (bad input, missing files, a directory in the way, an output directory
# that cannot be written): one clear log line and exit status 1, not a traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError)


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """ValueError naming the first of these options whose value is not above 0 (``--max-duration 0``,
    say). Programs call it first, before a stage marker is touched."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be above 0, got {value}")


def add_distributed_options(parser: argparse.ArgumentParser) -> None:
    """``--dist-timeout``: how long a collective waits for the other ranks (launch: utils/launch.sh)."""
    from rlhf import distributed

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
            from rlhf import distributed
            distributed.init(dist_timeout, device_name)
        step()
        if dist_timeout is not None:
            distributed.shutdown()
    except USER_ERRORS as e:
        logging.error("%s", describe_error(e))
        raise SystemExit(1)
    except OSError as e:
        if not is_user_os_error(e):
            raise
        logging.error("%s", describe_error(e))
        raise SystemExit(1)
