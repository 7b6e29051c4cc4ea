#!/usr/bin/env bash
# steps/qlearn.sh [options] <exp-dir>
# Q-learning over the stage-5 lattices in <exp-dir>/lattices/: per-arc Q, V and advantages are
# written beside them (<split>/q-<reward>/), the summary to <exp-dir>/qlearn-<reward>.md (stage 6).
# --world-size N [--nodes M] first: N processes of one torch.distributed job (utils/launch.sh, cmd.sh).
# Program: rlhf/bin/qlearn.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec "$(dirname "$0")/../utils/launch.sh" rlhf.bin.qlearn "$@"
