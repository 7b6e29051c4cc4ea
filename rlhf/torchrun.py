"""``torchrun`` as torch 1.13.1 ships it, made to work on Python 3.11: ``python -m rlhf.torchrun``.

torch 1.13.1 parses ``--redirects``/``--tee`` by iterating its ``Std`` IntFlag, and Python 3.11
no longer yields the zero and multi-bit members when iterating a flag, so even the defaults
("0") parse to None and every launch fails in ``to_map``. This module parses them by value
and then runs torchrun's own ``main``; every option is torchrun's. Its ``--standalone`` hosts
the rendezvous on a free port instead of the fixed 29400, so two jobs on one machine (two
recipes, or tests) do not meet each other.
"""

import re
import socket
import sys
import uuid

from torch.distributed.elastic.multiprocessing import api
from torch.distributed.run import main


def _std_from_str(vm: str):
    """``"3"`` -> Std.ALL; ``"0:1,1:2"`` -> {0: Std.OUT, 1: Std.ERR} (what torchrun documents)."""
    if re.match(api._VALUE_REGEX, vm):
        return api.Std(int(vm))
    if re.match(api._MAPPING_REGEX, vm):
        return {int(i): api.Std(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
    raise ValueError(f"{vm} does not match {api._VALUE_REGEX} or {api._MAPPING_REGEX}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def standalone_on_free_port(argv: list[str]) -> list[str]:
    """torchrun's options with ``--standalone`` (before ``-m``/the script) spelled out as a
    one-machine c10d rendezvous on a free local port."""
    end = next((i for i, a in enumerate(argv) if a in ("-m", "--module") or not a.startswith("-")), len(argv))
    if "--standalone" not in argv[:end]:
        return argv
    i = argv.index("--standalone")
    return argv[:i] + ["--nnodes=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=localhost:{free_port()}",
                       f"--rdzv_id={uuid.uuid4()}"] + argv[i + 1:]


api.Std.from_str = staticmethod(_std_from_str)

if __name__ == "__main__":
    main(standalone_on_free_port(sys.argv[1:]))
