#!/usr/bin/env bash
# steps/make_lattices.sh [options] --epoch N --avg K <lang-dir> <fbank-dir> <exp-dir>
# Decode the training data (and dev) into k2 lattices with frame indices, references and forced
# alignments, in shards under <exp-dir>/lattices/<split>/ (stage 5).
# --world-size N [--nodes M] first: N processes of one torch.distributed job (utils/launch.sh, cmd.sh).
# Program: rlhf/bin/make_lattices.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec "$(dirname "$0")/../utils/launch.sh" rlhf.bin.make_lattices "$@"
