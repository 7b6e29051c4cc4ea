#!/usr/bin/env bash
# local/prepare_manifests.sh [options] <corpus-dir> <manifest-dir>
# Validates the corpus (audio present, readable, 16 kHz; transcripts not empty) and writes
# synth_{recordings,supervisions}_{train,dev,test}.jsonl.gz and summary.json.
# Options: see `rlhf-prepare-manifests --help`.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec rlhf-prepare-manifests --corpus-name synth "$@"
