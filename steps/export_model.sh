#!/usr/bin/env bash
# steps/export_model.sh [options] <lang-dir> <fbank-dir> <exp-dir>
# Copy the lang files (HLG.pt included, once compiled) and the fbank options into <exp-dir>,
# so the model directory transcribes on its own (rlhf-transcribe --model-dir <exp-dir>).
# Options: see `rlhf-export-model --help`.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec rlhf-export-model "$@"
