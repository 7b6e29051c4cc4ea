#!/usr/bin/env bash
# steps/prepare_lang.sh [options] <train-supervisions> <lang-dir>
# BPE model, tokens.txt, words.txt and lexicon.txt from the training transcripts.
# Options: see `rlhf-prepare-lang --help`.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec rlhf-prepare-lang "$@"
