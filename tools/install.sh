#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment with every version pinned.
#
#   tools/install.sh [venv-dir]      default: <repo>/.venv
#
# The stack is Python 3.10: the newest Python with builds of torch 1.13.1, torchaudio 0.13.1
# and k2 1.23.4 together (torchaudio 0.13.1 has none for 3.11). The interpreter is $PYTHON
# when set, else `python3.10` on PATH, else pyenv's newest 3.10.
#
# Idempotent: a venv whose recorded requirements hash matches is left alone, so path.sh
# can call this on every use at no cost. A venv made with another Python is rebuilt.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-${RLHF_VENV:-$root/.venv}}
stamp=$venv/.rlhf-install-stamp
required=3.10

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (tools/install.sh) $*" >&2; }

is_required_python() {  # $1: an interpreter; true when it runs and is Python $required
  "$1" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$required')" \
    >/dev/null 2>&1
}

find_python() {
  if [ -n "${PYTHON:-}" ]; then
    is_required_python "$PYTHON" && { echo "$PYTHON"; return; }
    log "ERROR: PYTHON=$PYTHON is not a working Python $required ($("$PYTHON" --version 2>&1 | head -1))."
    return 1
  fi
  if is_required_python python$required; then command -v python$required; return; fi
  local pyenv_root candidate
  pyenv_root=$( (pyenv root) 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for candidate in $(ls -d "$pyenv_root"/versions/$required.* 2>/dev/null | sort -V -r); do
    if is_required_python "$candidate/bin/python$required"; then
      echo "$candidate/bin/python$required"; return
    fi
  done
  log "ERROR: Python $required is required (torch 1.13.1, torchaudio 0.13.1 and k2 1.23.4 exist together only for it)."
  log "       None found: no working 'python$required' on PATH, none under $pyenv_root/versions/$required.*"
  log "       Install it (Debian/Ubuntu: apt install python$required python$required-venv; with pyenv: pyenv install $required)"
  log "       or set PYTHON=/path/to/python$required."
  return 1
}

want=$(cat "$root/tools/requirements.txt" "$root/tools/requirements-k2.txt" "$root/setup.py" \
  | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && is_required_python "$venv/bin/python"; then
  exit 0
fi

python=$(find_python)

if [ -x "$venv/bin/python" ] && ! is_required_python "$venv/bin/python"; then
  log "Removing $venv: it was made with $("$venv/bin/python" --version 2>&1), not Python $required"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  log "Creating virtual environment $venv with $python ($("$python" --version 2>&1))"
  rm -f "$stamp"
  "$python" -m venv "$venv"
fi
pip="$venv/bin/python -m pip"
# k2's wheel name is refused by recent pip (26.x); pip 23.2.1 accepts it.
if ! $pip --version | grep -qE '^pip 2[0-5]\.'; then
  log "Pinning pip to 23.2.1 (newer pip refuses k2's wheel file name)"
  $pip install -q 'pip==23.2.1'
fi

log "Installing pinned requirements (about 3.7 GB; first run takes several minutes)"
$pip install --disable-pip-version-check -q -r "$root/tools/requirements.txt" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
log "Installing k2 1.23.4 (the py3.10 build, pinned by sha256)"
$pip install --disable-pip-version-check -q --no-deps -r "$root/tools/requirements-k2.txt"
log "Installing the rlhf package (editable)"
$pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$root"

"$venv/bin/python" - >&2 <<'PY'
import k2, lhotse, torch, torchaudio, sentencepiece, kaldilm, espeakng_loader  # noqa: F401
import rlhf  # noqa: F401
from importlib.metadata import version
print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, k2 {version('k2')}, "
      f"lhotse {lhotse.__version__}")
PY

echo "$want" > "$stamp"
log "Environment ready: $venv"
