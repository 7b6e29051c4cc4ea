#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment with every version pinned.
#
#   tools/install.sh [venv-dir]      default: <repo>/.venv
#
# Idempotent: a venv whose recorded requirements hash matches is left alone, so
# path.sh can call this on every use at no cost.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-${RLHF_VENV:-$root/.venv}}
python=${PYTHON:-python3}
stamp=$venv/.rlhf-install-stamp

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (tools/install.sh) $*" >&2; }

want=$(cat "$root/tools/requirements.txt" "$root/tools/requirements-k2.txt" "$root/setup.py" \
  | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  log "ERROR: Python 3.11 is required (k2 1.23.4 has a build for CPython 3.11 only);"
  log "       '$python' is $("$python" --version 2>&1). Set PYTHON=/path/to/python3.11."
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  log "Creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip="$venv/bin/python -m pip"
# k2's wheel name is refused by recent pip (26.x); keep the pip that venv brings (23.2.x).
if ! $pip --version | grep -qE '^pip 2[0-5]\.'; then
  log "Pinning pip to 23.2.1 (newer pip refuses k2's wheel file name)"
  $pip install -q 'pip==23.2.1'
fi

log "Installing pinned requirements (about 3.7 GB; first run takes several minutes)"
$pip install --disable-pip-version-check -q -r "$root/tools/requirements.txt" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
log "Installing k2 1.23.4 (CPython 3.11 build, pinned by sha256)"
$pip install --disable-pip-version-check -q --no-deps -r "$root/tools/requirements-k2.txt"
log "Installing the rlhf package (editable)"
$pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$root"

"$venv/bin/python" - >&2 <<'PY'
import k2, lhotse, torch, sentencepiece, kaldilm, espeakng_loader  # noqa: F401
import rlhf  # noqa: F401
from importlib.metadata import version
print(f"torch {torch.__version__}, k2 {version('k2')}, lhotse {lhotse.__version__}")
PY

echo "$want" > "$stamp"
log "Environment ready: $venv"
