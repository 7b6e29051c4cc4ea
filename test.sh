#!/usr/bin/env bash
# Runs the test suite. Creates the environment on first use (see tools/install.sh).
# Extra arguments go to pytest, e.g. ./test.sh -k corpus, or ./test.sh -m "not slow" for the quick loop
# (CI runs the whole suite; docs/testing.md says how long each file takes, --durations=30 where).
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
exec python -m pytest tests "$@"
