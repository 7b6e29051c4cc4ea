#!/usr/bin/env bash
# local/synthesize_corpus.sh [options] <corpus-dir>
# Synthesizes the default corpus with eSpeak NG (offline, deterministic for a seed).
# Skipped when <corpus-dir> already holds it for the same options; refuses to overwrite
# a directory it did not make. Program: rlhf/bin/synthesize_corpus.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec python -m rlhf.bin.synthesize_corpus "$@"
