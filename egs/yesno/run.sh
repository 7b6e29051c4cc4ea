#!/usr/bin/env bash
# The yesno recipe: 60 real recordings of one speaker saying eight yes/no words, 8 kHz
# (Kaldi's and icefall's CI corpus). Same stage numbers as the default recipe, same steps/.
# Run from this directory: ./run.sh [--corpus-dir /path/to/waves_yesno] [--stage N] ...
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

stage=0                       # first stage to run
stop_stage=7                  # last stage to run
nj=2                          # parallel jobs
world_size=1                  # processes of the torch.distributed stages 3, 5, 6, 7 (launcher: cmd.sh)
dist_timeout=600              # seconds a rank waits for the others before the job fails
corpus_dir=                   # local waves_yesno directory (empty: download it into download/)
data_dir=data                 # manifests, lang, LM and features go here
exp_dir=exp                   # models and decoding results go here
lm_order=1                    # word n-gram order (yes and no come in random order)
num_mel_bins=23               # fbank bins (8 kHz audio)
num_epochs=80                 # most training epochs (stage 3)
patience=0                    # 0: no early stop, and stage 3 selects the last epoch (the only held-out set is test)
max_duration=15               # seconds of audio per training batch
lr=0.003                      # peak Adam learning rate
warmup_steps=200              # learning-rate warm-up (steps; 18 per epoch)
hidden_dim=32                 # TDNN width
num_layers=2                  # TDNN blocks
train_seed=42                 # model initialization, batch order and dropout
device=auto                   # auto, cpu, cuda:0, ...
avg=10                        # judge (stage 3) and decode an epoch averaged with the K-1 before it
epoch=                        # stages 4-7 use this epoch (default: the one stage 3 selected, selected.json)
lm_scale=1.0                  # weight of the HLG graph (unigram LM) scores; yesno's results were measured with 1.0
lattice_output_beam=8         # stage 5: lattice output beam (lattice size)
reward=frame                  # stage 6: frame (agreement with the forced alignment) or edit (minus errors)
hf_iters=5                    # stage 7: Hessian-free iterations
results_file=RESULTS.md       # decoding results are appended here ('' to skip)
force=false                   # redo stages even when their outputs are complete

help_message="Usage: $0 [options]
The yesno recipe: word units (YES, NO), a unigram LM, a tiny TDNN; train on 30 recordings,
test on the other 30."

# The command line, for the results table (no trailing comment: not an option).
recipe_args="$*"
. "$root/path.sh"
. "$root/utils/recipe_lib.sh"
. "$root/utils/parse_options.sh"
dist_opts=(--world-size "$world_size" --dist-timeout "$dist_timeout")
check_stages

manifest_dir=$data_dir/manifests
lang_dir=$data_dir/lang_word
lm_dir=$data_dir/lm
fbank_dir=$data_dir/fbank
log_dir=$data_dir/log
model_dir=$exp_dir/ctc_tdnn

if run_stage 0; then
  log "Stage 0: prepare the yesno manifests"
  "$here/local/prepare_yesno.sh" ${corpus_dir:+--corpus-dir "$corpus_dir"} --download-dir download \
    --force "$force" --log-dir "$log_dir" "$manifest_dir"
fi

if run_stage 1; then
  log "Stage 1: word lang dir and n-gram LM"
  require "$manifest_dir/yesno_supervisions_train.jsonl.gz" 0 "$manifest_dir/.prepare_yesno.done.json"
  "$root/steps/prepare_lang.sh" --model-type word --force "$force" --log-dir "$log_dir" \
    "$manifest_dir/yesno_supervisions_train.jsonl.gz" "$lang_dir"
  "$root/steps/train_lm.sh" --order "$lm_order" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir"
fi

if run_stage 2; then
  log "Stage 2: ${num_mel_bins}-dim fbank features and cut manifests"
  require "$manifest_dir/yesno_recordings_train.jsonl.gz" 0 "$manifest_dir/.prepare_yesno.done.json"
  "$root/steps/compute_fbank.sh" --corpus yesno --splits "train test" --num-mel-bins "$num_mel_bins" \
    --nj "$nj" --force "$force" --log-dir "$log_dir" "$manifest_dir" "$fbank_dir"
fi

if run_stage 3; then
  log "Stage 3: train the CTC model (per-epoch WER on test: yesno has no dev set)"
  require "$fbank_dir/yesno_cuts_train.jsonl.gz" 2 "$fbank_dir/.compute_fbank.done.json"
  "$root/steps/train_ctc.sh" "${dist_opts[@]}" --corpus yesno --dev-split test --num-features "$num_mel_bins" \
    --num-epochs "$num_epochs" --patience "$patience" --avg "$avg" --select last \
    --max-duration "$max_duration" --lr "$lr" --warmup-steps "$warmup_steps" \
    --hidden-dim "$hidden_dim" --num-layers "$num_layers" --seed "$train_seed" --log-interval 10 \
    --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
fi

# Stages 4-7 use the epoch that stage 3 selected (its convergence rule), unless --epoch names one.
if [ -z "$epoch" ] && { run_stage 4 || run_stage 5 || run_stage 7; }; then
  epoch=$(selected_epoch "$model_dir")
fi

if run_stage 4; then
  log "Stage 4: compile HLG, decode and score the test set"
  require "$model_dir/epoch-$epoch.pt" 3 "$model_dir/.train.done.json"
  "$root/steps/compile_hlg.sh" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir/G_${lm_order}_gram.fst.txt"
  "$root/steps/decode.sh" --corpus yesno --splits test --epoch "$epoch" --avg "$avg" --lm-scale "$lm_scale" \
    --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  "$root/steps/bundle_model.sh" --corpus yesno --force "$force" --log-dir "$log_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$model_dir/results-epoch-$epoch-avg-$avg.md" "$results_file"
fi

if run_stage 5; then
  log "Stage 5: decode train test into k2 lattices for sequence training"
  require "$lang_dir/HLG.pt" 4 "$lang_dir/.compile_hlg.done.json"
  "$root/steps/make_lattices.sh" "${dist_opts[@]}" --corpus yesno --splits "train test" --epoch "$epoch" --avg "$avg" \
    --output-beam "$lattice_output_beam" --lm-scale "$lm_scale" --device "$device" --force "$force" \
    "$lang_dir" "$fbank_dir" "$model_dir"
fi

if run_stage 6; then
  log "Stage 6: Q-learning over the lattices ($reward reward)"
  require "$model_dir/lattices/stats.json" 5 "$model_dir/lattices/.make-lattices.done.json"
  "$root/steps/qlearn.sh" "${dist_opts[@]}" --splits "train test" --reward "$reward" --force "$force" "$model_dir"
  append_results "$model_dir/qlearn-$reward.md" "$results_file"
fi

if run_stage 7; then
  log "Stage 7: fine-tune with the RL objective ($reward advantages) and Hessian-free; decode like stage 4"
  require "$model_dir/lattices/train/q-$reward" 6 "$model_dir/lattices/.qlearn-$reward.done.json"
  finetune_dir=$model_dir/finetune/rl-hf-$reward
  # yesno has no dev set: the test set picks the best iteration, as it picks the baseline's settings
  "$root/steps/finetune.sh" "${dist_opts[@]}" --corpus yesno --epoch "$epoch" --avg "$avg" --reward "$reward" \
    --max-iters "$hf_iters" --dev-split test --decode-splits test --lm-scale "$lm_scale" --device "$device" \
    --force "$force" --out-dir "$finetune_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$finetune_dir/comparison.md" "$results_file"
fi
