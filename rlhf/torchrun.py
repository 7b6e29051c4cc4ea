"""``torchrun`` whose ``--standalone`` takes a free port: ``python -m rlhf.torchrun``.

Every option is torchrun's (torch 1.13.1). Plain ``--standalone`` always hosts the rendezvous
on port 29400, so two jobs on one machine (two recipes, or tests) would meet each other; here
it is spelled out as a one-machine c10d rendezvous on a port the system hands out.
"""

import socket
import sys
import uuid

from torch.distributed.run import main


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


if __name__ == "__main__":
    main(standalone_on_free_port(sys.argv[1:]))
