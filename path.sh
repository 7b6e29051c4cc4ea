# Sourced by every recipe script: activates the project's virtual environment and
# creates it on first use (tools/install.sh is idempotent and fast once installed).
RLHF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RLHF_VENV=${RLHF_VENV:-$RLHF_ROOT/.venv}
"$RLHF_ROOT/tools/install.sh" "$RLHF_VENV" || { echo "path.sh: installation failed (see above)" >&2; return 1 2>/dev/null || exit 1; }
# shellcheck disable=SC1091
. "$RLHF_VENV/bin/activate"
export PYTHONUNBUFFERED=1
export RLHF_ROOT RLHF_VENV
