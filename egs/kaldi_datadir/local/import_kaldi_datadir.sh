#!/usr/bin/env bash
# local/import_kaldi_datadir.sh --train-dir DIR [--dev-dir DIR] [--test-dir DIR] [options] <manifest-dir>
# Lhotse manifests from Kaldi data directories (wav.scp, text, utt2spk, optional segments) with lhotse's Kaldi import.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../../path.sh"
echo "$0 $*" >&2
exec python "$here/import_kaldi_datadir.py" "$@"
