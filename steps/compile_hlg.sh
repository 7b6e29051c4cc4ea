#!/usr/bin/env bash
# steps/compile_hlg.sh [options] <lang-dir> <G-fst-txt>
# CTC decoding graph <lang-dir>/HLG.pt = H o det(L o G), from the lang dir and a kaldilm G.
# Program: rlhf/bin/compile_hlg.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.compile_hlg "$@"
