#!/usr/bin/env bash
# steps/compute_fbank.sh [options] <manifest-dir> <fbank-dir>
# 80-dim Kaldi-compatible fbank for every split, lilcom-compressed, with cut manifests.
# Program: rlhf/bin/compute_fbank.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.compute_fbank "$@"
