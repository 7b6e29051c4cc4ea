#!/usr/bin/env bash
# steps/prepare_lang.sh [options] <train-supervisions> <lang-dir>
# BPE model, tokens.txt, words.txt and lexicon.txt from the training transcripts.
# Program: rlhf/bin/prepare_lang.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.prepare_lang "$@"
