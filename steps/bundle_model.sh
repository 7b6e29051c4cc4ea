#!/usr/bin/env bash
# steps/bundle_model.sh [options] <lang-dir> <fbank-dir> <exp-dir>
# Copy the lang files (HLG.pt included, once compiled) and the fbank options into <exp-dir>,
# so the model directory transcribes on its own (rlhf-transcribe --model-dir <exp-dir>).
# Program: rlhf/bin/bundle_model.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.bundle_model "$@"
