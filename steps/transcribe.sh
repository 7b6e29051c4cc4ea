#!/usr/bin/env bash
# steps/transcribe.sh [options] --model-dir <exp-dir> <audio-file>...
# Print "<file> <transcript>" for each audio file, decoded with a trained model directory.
# Program: rlhf/bin/transcribe.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.transcribe "$@"
