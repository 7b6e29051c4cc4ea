#!/usr/bin/env bash
# steps/tune_lm_scale.sh [options] (--epoch N --avg K | --checkpoint best.pt) <lang-dir> <fbank-dir> <exp-dir>
# HLG 1-best WER of the dev split at several LM scales, to choose --lm-scale on dev (not on test).
# Program: rlhf/bin/tune_lm_scale.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.tune_lm_scale "$@"
