#!/usr/bin/env bash
# steps/finetune.sh [options] --epoch N --avg K <lang-dir> <fbank-dir> <exp-dir>
# Sequence fine-tuning of the baseline on its stage-5 lattices and stage-6 values (stage 7):
# RL objective with Hessian-free by default; Adam, k2's mwer_loss and CTC as controls.
# Writes <exp-dir>/finetune/<method>/ (best.pt, state.pt, progress.json). Options: `rlhf-finetune --help`.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec rlhf-finetune "$@"
