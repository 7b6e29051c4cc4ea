#!/usr/bin/env bash
# Benchmark: stage 7's method against its controls, each given the same wall-clock budget of
# optimization on the same lattices, one after the other on the same machine (issue 19):
#   (a) rl-hf-frame, rl-hf-edit  RL objective (expected stage-6 advantage) + Hessian-free
#   (b) rl-adam    RL objective (--reward) + Adam
#   (c) mwer-adam  k2's mwer_loss on the re-scored lattices + Adam
#   (d) ctc-adam   the baseline trained on with CTC + Adam
#   (e) mmi-adam   lattice MMI (reference CTC graph against the re-scored lattice) + Adam
#   mmi-hf: lattice MMI + Hessian-free, which tells the optimizer's share from the objective's
# Every method runs once per --seeds seed (held-out set, batch draws, sampled paths, Adam's
# order), into <out-dir>/<method>-seed<k>; a complete run is skipped, so the benchmark resumes
# one method and seed at a time. Each best model (by dev WER) is decoded like stage 4. Outputs:
# <out-dir>/comparison.{md,png} (every run, per-method mean and spread, paired bootstrap on test
# against the baseline and against --reference-method), also appended to RESULTS.md, and the
# test hypotheses in icefall's recogs format under --recogs-dir (recogs-test-<method>-seed<k>.txt,
# HLG 1-best; ...-greedy.txt, ctc-greedy; recogs-test-baseline[-greedy].txt).
# Run after stage 6 (./run.sh --stop-stage 6); stage-6 values of a reward not yet there (or made
# for older lattices) are made, for train and dev as stage 6 does.
# Not part of ./test.sh: it takes about methods x seeds x (--time-budget + evaluations).
#   local/bench_finetune.sh [--time-budget 600] [--seeds "0 1 2"] [--methods "rl-hf-frame mmi-adam"]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
data_dir=data                 # manifests, lang, features (as in run.sh)
bpe_vocab_size=200            # lang dir is <data_dir>/lang_bpe_<N>
exp_dir=exp/ctc_tdnn          # the baseline's directory (checkpoints, lattices/)
epoch=                        # the baseline: epoch-N.pt (default: the one stage 3 selected) ...
avg=5                         # ... averaged with the epochs before it (as stage 4 and 5)
lm_scale=0.5                  # HLG decoding of dev and test (as stage 4)
reward=frame                  # stage-6 values of a method named without its reward (rl-adam)
methods="rl-hf-frame rl-hf-edit rl-adam mwer-adam ctc-adam mmi-adam"   # <objective>-<optimizer>[-<reward>]
seeds="0 1 2"                 # one run of every method per seed
reference_method=rl-hf-frame  # the bootstrap also compares every method with this one (same seed)
corpus=synth                  # the manifests' corpus name (an4 for egs/an4); also names the recogs directory
recogs_dir=                   # default: results/finetune-bench-<corpus> in the repository
time_budget=600               # seconds of optimization per method (evaluation excluded)
eval_interval=30              # dev WER at least every this many seconds of optimization
grad_fraction=0.25            # *-hf: share of the training lattices in each gradient
curvature_fraction=0.1        # *-hf: share of the gradient's utterances in the curvature sample
heldout_utts=150              # *-hf: training utterances held out for the line search (and rho)
init_damping=0.01             # *-hf: initial Levenberg-Marquardt lambda
cg_max_iters=12               # *-hf: most CG iterations per HF iteration
rho_data=heldout              # *-hf: the data of rho, which sets the damping (heldout or gradient)
preconditioner=diagonal       # *-hf: CG's preconditioner (diagonal, fisher: per-utterance empirical Fisher, or none)
lr=0.0001                     # Adam learning rate (all Adam methods)
ctc_weight=0.0                # CTC regularizer added to the lattice objectives (rl, mwer, mmi)
kappa=1.0                     # acoustic scale of the lattice objectives (all but ctc-adam; Kaldi's --acwt)
time_masks=false              # SpecAugment's time masks on the training batches, as stage 3 (all methods)
regenerate_lattices=false     # decode each update's lattices anew with the current model (the lattice methods)
batch_frames=12000            # padded output frames per batch (all methods)
out_dir=                      # default: <exp_dir>/finetune-bench
results_file=RESULTS.md       # append the table here ('' to skip)
force=false

help_message="Usage: $0 [options]"
recipe_args="$*"
. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"

lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
out_dir=${out_dir:-$exp_dir/finetune-bench}
recogs_dir=${recogs_dir:-$here/results/finetune-bench-$corpus}
epoch=${epoch:-$(selected_epoch "$exp_dir")}
baseline=$exp_dir/results-epoch-$epoch-avg-$avg.json
require "$baseline" 4
require "$exp_dir/lattices/stats.json" 5 "$exp_dir/lattices/.make-lattices.done.json"

run_dirs=()
for method in $methods; do
  IFS=- read -r objective optimizer method_reward <<< "$method"
  method_reward=${method_reward:-$reward}
  regenerate=$regenerate_lattices
  [ "$objective" = ctc ] && regenerate=false   # ctc-adam reads no lattices
  # Stage 6 skips values that are complete for these lattices, and remakes those of lattices
  # stage 5 has made again since (a marker file alone would not tell).
  "$here/steps/qlearn.sh" --splits "train dev" --reward "$method_reward" "$exp_dir" > /dev/null
  for seed in $seeds; do
    run_dir=$out_dir/$method-seed$seed
    log "Fine-tuning $method (seed $seed) for $time_budget s"
    "$here/steps/finetune.sh" --corpus "$corpus" --epoch "$epoch" --avg "$avg" --lm-scale "$lm_scale" --objective "$objective" \
      --optimizer "$optimizer" --reward "$method_reward" --time-budget "$time_budget" --max-iters 1000000 \
      --eval-every 1000000 --eval-interval "$eval_interval" --grad-fraction "$grad_fraction" --lr "$lr" \
      --curvature-fraction "$curvature_fraction" --heldout-utts "$heldout_utts" --hf-init-damping "$init_damping" \
      --hf-cg-max-iters "$cg_max_iters" --hf-rho-data "$rho_data" --hf-preconditioner "$preconditioner" \
      --batch-frames "$batch_frames" --kappa "$kappa" --ctc-weight "$ctc_weight" --time-masks "$time_masks" \
      --regenerate-lattices "$regenerate" \
      --seed "$seed" --out-dir "$run_dir" --force "$force" "$lang_dir" "$data_dir/fbank" "$exp_dir" > /dev/null
    run_dirs+=("$run_dir")
  done
done
python -m rlhf.bin.compare_finetune --out "$out_dir/comparison" --recogs-dir "$recogs_dir" \
  --reference-method "$reference_method" "$baseline" "${run_dirs[@]}"
append_results "$out_dir/comparison.md" "$results_file"
