#!/usr/bin/env bash
# steps/train_ctc.sh [options] <lang-dir> <fbank-dir> <exp-dir>
# Train the baseline CTC model (k2 CTC loss) on <fbank-dir>/<corpus>_cuts_train.jsonl.gz.
# Checkpoints go to <exp-dir>/epoch-N.pt; resume with --start-epoch N.
# --world-size N [--nodes M] first: N processes of one torch.distributed job (utils/launch.sh, cmd.sh).
# Program: rlhf/bin/train_ctc.py (options: --help).
set -euo pipefail
. "$(dirname "$0")/../path.sh"
echo "$0 $*" >&2
exec "$(dirname "$0")/../utils/launch.sh" rlhf.bin.train_ctc "$@"
