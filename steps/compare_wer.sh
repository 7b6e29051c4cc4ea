#!/usr/bin/env bash
# steps/compare_wer.sh [options] <recogs-A> <recogs-B>
# Paired bootstrap over utterances: B's WER against A's, the 95% interval of the difference.
# --speaker-pattern REGEX resamples whole speakers instead (the interval for new speakers).
# Program: rlhf/bin/compare_wer.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
exec python -m rlhf.bin.compare_wer "$@"
