#!/usr/bin/env bash
# local/prepare_manifests.sh [options] <corpus-dir> <manifest-dir>
# Validates the corpus (audio present, readable, 16 kHz; transcripts not empty) and writes
# synth_{recordings,supervisions}_{train,dev,test}.jsonl.gz and summary.json.
# Program: rlhf/bin/prepare_manifests.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.prepare_manifests --corpus-name synth "$@"
