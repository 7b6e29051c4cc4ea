#!/usr/bin/env bash
# The AN4 recipe: CMU's census database, real read speech of 84 speakers (spelled letters, digits,
# command words), 16 kHz; 42 minutes of training audio. Same stage numbers as the default
# recipe, same steps/; only local/ and the defaults below are AN4's own.
# Run from this directory: ./run.sh --corpus-dir /path/to/an4 [--stage N] ...
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

stage=0                       # first stage to run
stop_stage=7                  # last stage to run
nj=2                          # parallel jobs
world_size=1                  # processes of the torch.distributed stages 3, 5, 6, 7 (launcher: cmd.sh)
dist_timeout=600              # seconds a rank waits for the others before the job fails
corpus_dir=                   # the AN4 tree (etc/ and wav/, WAV or SPHERE audio); required
data_dir=data                 # manifests, lang, LM and features go here
exp_dir=exp                   # models and decoding results go here
bpe_vocab_size=30             # sentencepiece vocabulary size (30: near-characters); lang dir is data/lang_bpe_<N>
lm_order=3                    # word n-gram order, estimated from the training transcripts
speed_perturb=true            # stage 2: add 0.9x and 1.1x speed copies of the training utterances
model_name=ctc_tdnn           # the model's directory: <exp_dir>/<model_name>
num_epochs=40                 # most training epochs (stage 3; what fits the 30-minute recipe on 2 cores)
patience=5                    # stop when the dev WER and loss made no new best for N epochs (0: never)
start_epoch=1                 # resume training from <exp_dir>/<model_name>/epoch-(N-1).pt
max_duration=40               # seconds of audio per training batch (chosen on dev against 60 and 120: RESULTS.md)
lr=0.002                      # peak Adam learning rate
warmup_steps=500              # learning-rate warm-up (steps)
lr_schedule=inv-sqrt          # after warm-up: inv-sqrt (1/sqrt(step)) or cosine (to 0 at --num-epochs)
lr_epochs=0                   # also decay the learning rate with the epoch (icefall's Eden factor E; 0: off)
encoder=tdnn                  # tdnn, or conformer (torchaudio's Conformer)
hidden_dim=256                # encoder width
num_layers=8                  # encoder blocks
dropout=0.1                   # dropout in every encoder block
time_warp_factor=0            # SpecAugment's time warp in frames (icefall's 80 is for 15 s utterances; AN4's last 3 s)
feature_masks=0               # SpecAugment's frequency masks (icefall's 2 kept 40 epochs from converging: RESULTS.md)
train_seed=42                 # model initialization, batch order and dropout
device=auto                   # auto (GPU when there is one), cpu, cuda:0, ...
avg=10                        # judge (stage 3) and decode an epoch averaged with the K-1 before it (10: a smooth dev curve)
epoch=                        # stages 4-7 use this epoch (default: the one stage 3 selected, selected.json)
search_beam=20                # lattice search beam
output_beam=8                 # lattice output beam
max_active_states=10000       # most active states per frame in the lattice search
lm_scale=0.3                  # weight of the HLG graph (LM) scores (chosen on dev: steps/tune_lm_scale.sh)
lattice_output_beam=8         # stage 5: lattice output beam (lattice size)
lattice_lm_order=3            # stage 5: word n-gram order of the lattices' LM (below --lm-order: a weaker LM, more errors)
reward=frame                  # stage 6: frame (agreement with the forced alignment) or edit (minus errors)
kappa=1.0                     # stage 7: acoustic scale of the re-scored lattice arcs (Kaldi's --acwt)
time_masks=false              # stage 7: SpecAugment's time masks on the training batches, as stage 3
regenerate_lattices=false     # stage 7: decode each update's lattices anew with the current model (as stage 5)
hf_iters=12                   # stage 7: Hessian-free iterations ...
hf_time_budget=0              # stage 7: ... or seconds of optimization (0: no limit)
results_file=RESULTS.md       # decoding results are appended here ('' to skip)
force=false                   # redo stages even when their outputs are complete

help_message="Usage: $0 --corpus-dir DIR [options]
CMU AN4 (WAV or SPHERE copy of the cmusphinx distribution): BPE units, a word 3-gram from the
training transcripts, the TDNN CTC model. Splits: train, dev (8 training speakers held out,
see local/prepare_an4.py) and test (AN4's test set, for reporting only)."

# The command line, for the results table (no trailing comment: not an option).
recipe_args="$*"
. "$root/path.sh"
. "$root/utils/recipe_lib.sh"
. "$root/utils/parse_options.sh"
dist_opts=(--world-size "$world_size" --dist-timeout "$dist_timeout")
check_stages

manifest_dir=$data_dir/manifests
lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
lm_dir=$data_dir/lm
fbank_dir=$data_dir/fbank
log_dir=$data_dir/log
model_dir=$exp_dir/$model_name

if run_stage 0; then
  log "Stage 0: check the AN4 tree and prepare its manifests"
  if [ -z "$corpus_dir" ]; then
    log "ERROR: --corpus-dir is required: the AN4 tree (etc/an4_train.transcription, wav/an4_clstk/...)"; exit 1
  fi
  "$here/local/prepare_an4.sh" --corpus-dir "$corpus_dir" --wav-dir download/an4_wav --force "$force" \
    --log-dir "$log_dir" "$manifest_dir"
fi

if run_stage 1; then
  log "Stage 1: BPE lang dir and word n-gram LM"
  require "$manifest_dir/an4_supervisions_train.jsonl.gz" 0 "$manifest_dir/.prepare_an4.done.json"
  "$root/steps/prepare_lang.sh" --vocab-size "$bpe_vocab_size" --force "$force" --log-dir "$log_dir" \
    "$manifest_dir/an4_supervisions_train.jsonl.gz" "$lang_dir"
  "$root/steps/train_lm.sh" --order "$lm_order" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir"
fi

if run_stage 2; then
  log "Stage 2: 80-dim fbank features and cut manifests"
  require "$manifest_dir/an4_recordings_train.jsonl.gz" 0 "$manifest_dir/.prepare_an4.done.json"
  "$root/steps/compute_fbank.sh" --corpus an4 --splits "train dev test" --nj "$nj" \
    --speed-perturb "$speed_perturb" --force "$force" --log-dir "$log_dir" "$manifest_dir" "$fbank_dir"
fi

if run_stage 3; then
  log "Stage 3: train the CTC model (per-epoch WER on dev)"
  require "$fbank_dir/an4_cuts_train.jsonl.gz" 2 "$fbank_dir/.compute_fbank.done.json"
  require "$lang_dir/tokens.txt" 1 "$lang_dir/.prepare_lang.done.json"
  "$root/steps/train_ctc.sh" "${dist_opts[@]}" --corpus an4 --dev-split dev --num-epochs "$num_epochs" \
    --patience "$patience" --avg "$avg" \
    --start-epoch "$start_epoch" --max-duration "$max_duration" --lr "$lr" --warmup-steps "$warmup_steps" --lr-schedule "$lr_schedule" --lr-epochs "$lr_epochs" \
    --encoder "$encoder" --hidden-dim "$hidden_dim" --num-layers "$num_layers" --dropout "$dropout" \
    --time-warp-factor "$time_warp_factor" --feature-masks "$feature_masks" \
    --seed "$train_seed" --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
fi

# Stages 4-7 use the epoch that stage 3 selected (its convergence rule), unless --epoch names one.
if [ -z "$epoch" ] && { run_stage 4 || run_stage 5 || run_stage 7; }; then
  epoch=$(selected_epoch "$model_dir")
fi

if run_stage 4; then
  log "Stage 4: compile HLG, decode and score dev and test, make the model directory self-contained"
  require "$model_dir/epoch-$epoch.pt" 3 "$model_dir/.train.done.json"
  require "$lm_dir/G_${lm_order}_gram.fst.txt" 1 "$lm_dir/.train_lm_${lm_order}gram.done.json"
  "$root/steps/compile_hlg.sh" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir/G_${lm_order}_gram.fst.txt"
  "$root/steps/decode.sh" --corpus an4 --splits "dev test" --epoch "$epoch" --avg "$avg" \
    --search-beam "$search_beam" --output-beam "$output_beam" --max-active-states "$max_active_states" \
    --lm-scale "$lm_scale" --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  "$root/steps/bundle_model.sh" --corpus an4 --force "$force" --log-dir "$log_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$model_dir/results-epoch-$epoch-avg-$avg.md" "$results_file"
fi

if run_stage 5; then
  log "Stage 5: decode train and dev into k2 lattices for sequence training"
  require "$lang_dir/HLG.pt" 4 "$lang_dir/.compile_hlg.done.json"
  hlg=$(lattice_hlg "$lang_dir" "$lm_dir" "$lm_order" "$lattice_lm_order")
  "$root/steps/make_lattices.sh" "${dist_opts[@]}" --corpus an4 --splits "train dev" --epoch "$epoch" --avg "$avg" \
    --search-beam "$search_beam" --output-beam "$lattice_output_beam" --max-active-states "$max_active_states" \
    --lm-scale "$lm_scale" --hlg "$hlg" --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
fi

if run_stage 6; then
  log "Stage 6: Q-learning over the lattices ($reward reward)"
  require "$model_dir/lattices/stats.json" 5 "$model_dir/lattices/.make-lattices.done.json"
  "$root/steps/qlearn.sh" "${dist_opts[@]}" --splits "train dev" --reward "$reward" --force "$force" "$model_dir"
  append_results "$model_dir/qlearn-$reward.md" "$results_file"
fi

if run_stage 7; then
  log "Stage 7: fine-tune with the RL objective ($reward advantages) and Hessian-free; decode like stage 4"
  require "$model_dir/lattices/train/q-$reward" 6 "$model_dir/lattices/.qlearn-$reward.done.json"
  finetune_dir=$model_dir/finetune/rl-hf-$reward
  "$root/steps/finetune.sh" "${dist_opts[@]}" --corpus an4 --epoch "$epoch" --avg "$avg" --reward "$reward" \
    --kappa "$kappa" --time-masks "$time_masks" --regenerate-lattices "$regenerate_lattices" \
    --max-iters "$hf_iters" --time-budget "$hf_time_budget" \
    --dev-split dev --decode-splits "dev test" \
    --search-beam "$search_beam" --output-beam "$output_beam" --max-active-states "$max_active_states" \
    --lm-scale "$lm_scale" --device "$device" --force "$force" --out-dir "$finetune_dir" \
    "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$finetune_dir/comparison.md" "$results_file"
fi
