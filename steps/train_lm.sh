#!/usr/bin/env bash
# steps/train_lm.sh [options] <lang-dir> <lm-dir>
# Kneser-Ney word n-gram LM (ARPA) from the lang dir's transcripts, compiled to G with kaldilm.
# --arpa FILE compiles a given ARPA LM (.arpa or .arpa.gz) instead.
# Program: rlhf/bin/train_lm.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.train_lm "$@"
