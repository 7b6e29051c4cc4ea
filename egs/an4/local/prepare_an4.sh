#!/usr/bin/env bash
# local/prepare_an4.sh --corpus-dir DIR [options] <manifest-dir>
# AN4 manifests (train, speaker-disjoint dev, test), every file checked; see prepare_an4.py --help.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../path.sh"
echo "$0 $*" >&2
exec python "$here/prepare_an4.py" "$@"
