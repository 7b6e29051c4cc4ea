#!/usr/bin/env bash
# steps/decode.sh [options] --epoch N --avg K <lang-dir> <fbank-dir> <exp-dir>
# Decode dev/test with CTC greedy search and k2 lattices (CTC topology, HLG) and score them.
# Program: rlhf/bin/decode.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.decode "$@"
