#!/usr/bin/env bash
# local/synthesize_corpus.sh [options] <corpus-dir>
# Synthesizes the default corpus with eSpeak NG (offline, deterministic for a seed).
# Skipped when <corpus-dir> already holds it for the same options; refuses to overwrite
# a directory it did not make. Options: see `rlhf-synth-corpus --help`.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec rlhf-synth-corpus "$@"
