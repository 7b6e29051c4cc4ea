#!/usr/bin/env bash
# steps/decode.sh [options] --epoch N --avg K <lang-dir> <fbank-dir> <exp-dir>
# Decode dev/test with CTC greedy search and k2 lattices (CTC topology, HLG) and score them.
# Options: see `rlhf-decode --help`.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec rlhf-decode "$@"
