#!/usr/bin/env bash
# local/prepare_librispeech.sh [--corpus-dir DIR] [--train-parts "..."] [options] <manifest-dir>
# LibriSpeech manifests with lhotse.recipes.prepare_librispeech; downloads the parts only when no --corpus-dir is given.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../path.sh"
echo "$0 $*" >&2
exec python "$here/prepare_librispeech.py" "$@"
