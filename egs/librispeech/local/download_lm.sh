#!/usr/bin/env bash
# local/download_lm.sh [--name FILE] <download-dir>
# LibriSpeech's published ARPA LM from OpenSLR 11 (for --lm published); prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../path.sh"
echo "$0 $*" >&2
exec python "$here/download_lm.py" "$@"
