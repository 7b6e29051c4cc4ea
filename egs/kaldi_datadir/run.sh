#!/usr/bin/env bash
# Any corpus already prepared as Kaldi data directories (wav.scp, text, utt2spk, optional segments),
# imported with lhotse's Kaldi import. Same stage numbers as the default recipe, same steps/.
# Run from this directory: ./run.sh --train-dir /path/data/train --dev-dir /path/data/dev --test-dir /path/data/test
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

stage=0                       # first stage to run
stop_stage=7                  # last stage to run
nj=8                          # parallel jobs
world_size=1                  # processes of the torch.distributed stages 3, 5, 6, 7 (launcher: cmd.sh)
dist_timeout=600              # seconds a rank waits for the others before the job fails
train_dir=                    # Kaldi data directory of the training set (required)
dev_dir=                      # ... of the dev set (per-epoch WER; without one, the test set is used)
test_dir=                     # ... of the test set (at least one of dev and test is required)
corpus=kaldi                  # manifest name prefix: data/manifests/<corpus>_recordings_<split>.jsonl.gz
sampling_rate=16000           # the audio's sampling rate (checked against every file)
num_mel_bins=80               # fbank bins (e.g. 23 for 8 kHz audio)
data_dir=data                 # manifests, lang, LM and features go here
exp_dir=exp                   # models and decoding results go here
bpe_vocab_size=500            # sentencepiece vocabulary size; lang dir is data/lang_bpe_<N>
lm_order=3                    # word n-gram order of the LM estimated from the training transcripts
speed_perturb=false           # stage 2: add 0.9x and 1.1x speed copies of the training utterances
model_name=ctc_tdnn           # the model's directory: <exp_dir>/<model_name>
num_epochs=30                 # most training epochs (stage 3)
patience=5                    # stop when the dev WER and loss made no new best for N epochs (0: never; 0 without --dev-dir)
start_epoch=1                 # resume training from <exp_dir>/<model_name>/epoch-(N-1).pt
max_duration=600              # seconds of audio per training batch
lr=0.002                      # peak Adam learning rate
warmup_steps=1000             # learning-rate warm-up (steps)
encoder=tdnn                  # tdnn, or conformer (torchaudio's Conformer)
hidden_dim=512                # encoder width
num_layers=12                 # encoder blocks
train_seed=42                 # model initialization, batch order and dropout
device=auto                   # auto (GPU when there is one), cpu, cuda:0, ...
avg=5                         # judge (stage 3) and decode an epoch averaged with the K-1 before it
epoch=                        # stages 4-7 use this epoch (default: the one stage 3 selected, selected.json)
max_active_states=10000       # most active states per frame in the lattice search
lm_scale=0.5                  # weight of the HLG graph (LM) scores
lattice_output_beam=8         # stage 5: lattice output beam (lattice size)
reward=frame                  # stage 6: frame (agreement with the forced alignment) or edit (minus errors)
hf_iters=12                   # stage 7: Hessian-free iterations ...
hf_time_budget=0              # stage 7: ... or seconds of optimization (0: no limit)
results_file=RESULTS.md       # decoding results are appended here ('' to skip)
force=false                   # redo stages even when their outputs are complete

help_message="Usage: $0 --train-dir DIR [--dev-dir DIR] [--test-dir DIR] [options]
Imports Kaldi data directories (one per split) and runs the default recipe's stages on them:
BPE units, a word n-gram LM from the training transcripts, the TDNN CTC model."

# The command line, for the results table (no trailing comment: not an option).
recipe_args="$*"
. "$root/path.sh"
. "$root/utils/recipe_lib.sh"
. "$root/utils/parse_options.sh"
dist_opts=(--world-size "$world_size" --dist-timeout "$dist_timeout")
check_stages

# The held-out splits given ("dev test", "dev" or "test"); the first gives the per-epoch WER.
heldout=$(echo ${dev_dir:+dev} ${test_dir:+test})
if [ -z "$train_dir" ] || [ -z "$heldout" ]; then
  log "ERROR: give --train-dir and at least one of --dev-dir and --test-dir (see $0 --help)"; exit 1
fi
dev_split=${heldout%% *}
# Without a dev set the per-epoch WER is the test set's: then no early stop and no choosing by it.
select=best
if [ -z "$dev_dir" ]; then patience=0; select=last; fi

manifest_dir=$data_dir/manifests
lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
lm_dir=$data_dir/lm
fbank_dir=$data_dir/fbank
log_dir=$data_dir/log
model_dir=$exp_dir/$model_name

if run_stage 0; then
  log "Stage 0: import the Kaldi data directories as Lhotse manifests"
  "$here/local/import_kaldi_datadir.sh" --train-dir "$train_dir" ${dev_dir:+--dev-dir "$dev_dir"} \
    ${test_dir:+--test-dir "$test_dir"} --corpus "$corpus" --sampling-rate "$sampling_rate" --nj "$nj" \
    --force "$force" --log-dir "$log_dir" "$manifest_dir"
fi

if run_stage 1; then
  log "Stage 1: BPE lang dir and word n-gram LM"
  require "$manifest_dir/${corpus}_supervisions_train.jsonl.gz" 0 "$manifest_dir/.import_kaldi_datadir_${corpus}.done.json"
  "$root/steps/prepare_lang.sh" --vocab-size "$bpe_vocab_size" --force "$force" --log-dir "$log_dir" \
    "$manifest_dir/${corpus}_supervisions_train.jsonl.gz" "$lang_dir"
  "$root/steps/train_lm.sh" --order "$lm_order" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir"
fi

if run_stage 2; then
  log "Stage 2: fbank features and cut manifests"
  require "$manifest_dir/${corpus}_recordings_train.jsonl.gz" 0 "$manifest_dir/.import_kaldi_datadir_${corpus}.done.json"
  "$root/steps/compute_fbank.sh" --corpus "$corpus" --splits "train $heldout" --num-mel-bins "$num_mel_bins" \
    --nj "$nj" --speed-perturb "$speed_perturb" --force "$force" --log-dir "$log_dir" "$manifest_dir" "$fbank_dir"
fi

if run_stage 3; then
  log "Stage 3: train the CTC model (per-epoch WER on dev, or test without a dev set)"
  require "$fbank_dir/${corpus}_cuts_train.jsonl.gz" 2 "$fbank_dir/.compute_fbank.done.json"
  require "$lang_dir/tokens.txt" 1 "$lang_dir/.prepare_lang.done.json"
  "$root/steps/train_ctc.sh" "${dist_opts[@]}" --corpus "$corpus" --dev-split "$dev_split" --num-features "$num_mel_bins" \
    --num-epochs "$num_epochs" --patience "$patience" --avg "$avg" --select "$select" --start-epoch "$start_epoch" \
    --max-duration "$max_duration" --lr "$lr" \
    --warmup-steps "$warmup_steps" --encoder "$encoder" --hidden-dim "$hidden_dim" --num-layers "$num_layers" \
    --seed "$train_seed" \
    --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
fi

# Stages 4-7 use the epoch that stage 3 selected (its convergence rule), unless --epoch names one.
if [ -z "$epoch" ] && { run_stage 4 || run_stage 5 || run_stage 7; }; then
  epoch=$(selected_epoch "$model_dir")
fi

if run_stage 4; then
  log "Stage 4: compile HLG, decode and score the held-out sets, bundle the model directory"
  require "$model_dir/epoch-$epoch.pt" 3 "$model_dir/.train.done.json"
  require "$lm_dir/G_${lm_order}_gram.fst.txt" 1 "$lm_dir/.train_lm_${lm_order}gram.done.json"
  "$root/steps/compile_hlg.sh" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir/G_${lm_order}_gram.fst.txt"
  "$root/steps/decode.sh" --corpus "$corpus" --splits "$heldout" --epoch "$epoch" --avg "$avg" \
    --max-active-states "$max_active_states" --lm-scale "$lm_scale" --device "$device" \
    --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  "$root/steps/bundle_model.sh" --corpus "$corpus" --force "$force" --log-dir "$log_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$model_dir/results-epoch-$epoch-avg-$avg.md" "$results_file"
fi

if run_stage 5; then
  log "Stage 5: decode train $dev_split into k2 lattices for sequence training"
  require "$lang_dir/HLG.pt" 4 "$lang_dir/.compile_hlg.done.json"
  "$root/steps/make_lattices.sh" "${dist_opts[@]}" --corpus "$corpus" --splits "train $dev_split" --epoch "$epoch" --avg "$avg" \
    --output-beam "$lattice_output_beam" --lm-scale "$lm_scale" --device "$device" --force "$force" \
    "$lang_dir" "$fbank_dir" "$model_dir"
fi

if run_stage 6; then
  log "Stage 6: Q-learning over the lattices ($reward reward)"
  require "$model_dir/lattices/stats.json" 5 "$model_dir/lattices/.make-lattices.done.json"
  "$root/steps/qlearn.sh" "${dist_opts[@]}" --splits "train $dev_split" --reward "$reward" --force "$force" "$model_dir"
  append_results "$model_dir/qlearn-$reward.md" "$results_file"
fi

if run_stage 7; then
  log "Stage 7: fine-tune with the RL objective ($reward advantages) and Hessian-free; decode like stage 4"
  require "$model_dir/lattices/train/q-$reward" 6 "$model_dir/lattices/.qlearn-$reward.done.json"
  finetune_dir=$model_dir/finetune/rl-hf-$reward
  "$root/steps/finetune.sh" "${dist_opts[@]}" --corpus "$corpus" --epoch "$epoch" --avg "$avg" --reward "$reward" \
    --max-iters "$hf_iters" --time-budget "$hf_time_budget" --dev-split "$dev_split" --decode-splits "$heldout" \
    --max-active-states "$max_active_states" --lm-scale "$lm_scale" --device "$device" --force "$force" \
    --out-dir "$finetune_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$finetune_dir/comparison.md" "$results_file"
fi
