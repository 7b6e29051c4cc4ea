#!/usr/bin/env bash
# steps/finetune.sh [options] --epoch N --avg K <lang-dir> <fbank-dir> <exp-dir>
# Sequence fine-tuning of the baseline on its stage-5 lattices and stage-6 values (stage 7):
# RL objective with Hessian-free by default; Adam, k2's mwer_loss and CTC as controls.
# Writes <exp-dir>/finetune/<method>/ (best.pt, state.pt, progress.json), then decodes dev and test
# with best.pt as stage 4 does and prints the table of baseline against fine-tuned WER
# (comparison.md, comparison.png). Program: rlhf/bin/finetune.py (options: --help).
# --world-size N [--nodes M] first: N processes of one torch.distributed job (utils/launch.sh, cmd.sh).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec "$(dirname "$0")/../utils/launch.sh" rlhf.bin.finetune "$@"
