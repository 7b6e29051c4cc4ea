#!/usr/bin/env bash
# local/prepare_yesno.sh [--corpus-dir DIR] [options] <manifest-dir>
# yesno manifests with lhotse.recipes.prepare_yesno; downloads the corpus when no --corpus-dir is given.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../path.sh"
echo "$0 $*" >&2
exec python "$here/prepare_yesno.py" "$@"
