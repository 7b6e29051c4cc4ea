#!/usr/bin/env bash
# Benchmark: stage 7's method against its controls, each given the same wall-clock budget of
# optimization on the same lattices, one after the other on the same machine:
#   (a) rl-hf     RL objective (expected stage-6 advantage) + Hessian-free
#   (b) rl-adam   RL objective + Adam
#   (c) mwer-adam k2's mwer_loss on the re-scored lattices + Adam
#   (d) ctc-adam  the baseline trained on with CTC + Adam
# Each best model (by dev WER) is decoded like stage 4; the WER table and a plot of dev WER
# against optimization time go to <out-dir>/comparison.{md,png}, the table also to RESULTS.md.
# Run after stage 6 (./run.sh --stop-stage 6). Not part of ./test.sh: it takes about
# 4 x (--time-budget + evaluations) on 2 cores.
#   local/bench_finetune.sh [--time-budget 600] [--reward frame] [--methods "rl-hf rl-adam mwer-adam ctc-adam"]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
data_dir=data                 # manifests, lang, features (as in run.sh)
bpe_vocab_size=200            # lang dir is <data_dir>/lang_bpe_<N>
exp_dir=exp/ctc_tdnn          # the baseline's directory (checkpoints, lattices/)
epoch=                        # the baseline: epoch-N.pt (default: the one stage 3 selected) ...
avg=3                         # ... averaged with the epochs before it (as stage 4 and 5)
lm_scale=0.5                  # HLG decoding of dev and test (as stage 4)
reward=frame                  # stage-6 values for the rl objective: frame or edit
methods="rl-hf rl-adam mwer-adam ctc-adam"   # objective-optimizer pairs to run
time_budget=600               # seconds of optimization per method (evaluation excluded)
eval_interval=30              # dev WER at least every this many seconds of optimization
grad_fraction=0.25            # rl-hf: share of the training lattices in each gradient
curvature_fraction=0.1        # rl-hf: share of the gradient's utterances in the curvature sample
heldout_utts=150              # rl-hf: training utterances held out for rho and the line search
init_damping=0.01             # rl-hf: initial Levenberg-Marquardt lambda
cg_max_iters=12               # rl-hf: most CG iterations per HF iteration
lr=0.0001                     # Adam learning rate (all Adam methods)
batch_frames=12000            # padded output frames per batch (all methods)
seed=0
out_dir=                      # default: <exp_dir>/finetune-bench-<reward>
results_file=RESULTS.md       # append the table here ('' to skip)
force=false

help_message="Usage: $0 [options]"
recipe_args="$*"
. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"

lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
out_dir=${out_dir:-$exp_dir/finetune-bench-$reward}
epoch=${epoch:-$(selected_epoch "$exp_dir")}
baseline=$exp_dir/results-epoch-$epoch-avg-$avg.json
require "$exp_dir/lattices/train/q-$reward" 6
require "$baseline" 4

run_dirs=()
for method in $methods; do
  objective=${method%%-*}
  optimizer=${method#*-}
  run_dir=$out_dir/$method
  log "Fine-tuning with $objective + $optimizer for $time_budget s"
  "$here/steps/finetune.sh" --epoch "$epoch" --avg "$avg" --lm-scale "$lm_scale" --objective "$objective" \
    --optimizer "$optimizer" --reward "$reward" --time-budget "$time_budget" --max-iters 1000000 \
    --eval-every 1000000 --eval-interval "$eval_interval" --grad-fraction "$grad_fraction" --lr "$lr" \
    --curvature-fraction "$curvature_fraction" --heldout-utts "$heldout_utts" --hf-init-damping "$init_damping" \
    --hf-cg-max-iters "$cg_max_iters" --batch-frames "$batch_frames" \
    --seed "$seed" --out-dir "$run_dir" --force "$force" "$lang_dir" "$data_dir/fbank" "$exp_dir" > /dev/null
  run_dirs+=("$run_dir")
done
python -m rlhf.bin.compare_finetune --out "$out_dir/comparison" "$baseline" "${run_dirs[@]}"
append_results "$out_dir/comparison.md" "$results_file"
