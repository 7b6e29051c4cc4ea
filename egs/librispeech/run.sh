#!/usr/bin/env bash
# The LibriSpeech recipe (or Mini LibriSpeech with --mini true): read English audiobooks, 16 kHz.
# Same stage numbers as the default recipe, same steps/; model sizes are for a GPU.
# Run from this directory: ./run.sh [--corpus-dir /path/to/LibriSpeech] [--mini true] [--stage N] ...
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

stage=0                       # first stage to run
stop_stage=7                  # last stage to run
nj=8                          # parallel jobs
world_size=1                  # processes of the torch.distributed stages 3, 5, 6, 7 (launcher: cmd.sh)
dist_timeout=600              # seconds a rank waits for the others before the job fails
corpus_dir=                   # local LibriSpeech directory holding the parts (empty: download them into download/)
mini=false                    # Mini LibriSpeech: train on train-clean-5, validate and test on dev-clean-2 (the parts below are then ignored)
train_parts="train-clean-100" # parts pooled into the train split (960 h: "train-clean-100 train-clean-360 train-other-500")
dev_part=dev-clean            # held-out part for the per-epoch WER (and LM-scale tuning)
test_parts="test-clean test-other" # parts decoded in stage 4, with the dev part
data_dir=data                 # manifests, lang, LM and features go here
exp_dir=exp                   # models and decoding results go here
bpe_vocab_size=500            # sentencepiece vocabulary size; lang dir is data/lang_bpe_<N>
lm=estimate                   # word 3-gram for HLG: estimate (from the training transcripts) or published (OpenSLR 11, downloaded)
lm_order=3                    # word n-gram order
speed_perturb=true            # stage 2: add 0.9x and 1.1x speed copies of the training utterances
model_name=conformer_ctc      # the model's directory: <exp_dir>/<model_name>
num_epochs=30                 # most training epochs (stage 3)
patience=5                    # stop when the dev WER and loss made no new best for N epochs (0: never)
start_epoch=1                 # resume training from <exp_dir>/<model_name>/epoch-(N-1).pt
max_duration=600              # seconds of audio per training batch
lr=0.002                      # peak Adam learning rate
warmup_steps=1000             # learning-rate warm-up (steps)
encoder=conformer             # conformer (torchaudio's Conformer) or tdnn
hidden_dim=512                # encoder width (attention dimension)
num_layers=12                 # encoder blocks
num_heads=8                   # conformer attention heads
ffn_dim=2048                  # conformer feed-forward size
conv_kernel_size=31           # conformer depthwise convolution kernel
train_seed=42                 # model initialization, batch order and dropout
device=auto                   # auto (GPU when there is one), cpu, cuda:0, ...
avg=5                         # judge (stage 3) and decode an epoch averaged with the K-1 before it
epoch=                        # stages 4-7 use this epoch (default: the one stage 3 selected, selected.json)
search_beam=20                # lattice search beam (stage 4)
output_beam=8                 # lattice output beam
max_active_states=10000       # most active states per frame in the lattice search
lm_scale=0.5                  # weight of the HLG graph (LM) scores
lattice_output_beam=8         # stage 5: lattice output beam (lattice size)
reward=frame                  # stage 6: frame (agreement with the forced alignment) or edit (minus errors)
hf_iters=12                   # stage 7: Hessian-free iterations ...
hf_time_budget=0              # stage 7: ... or seconds of optimization (0: no limit)
results_file=RESULTS.md       # decoding results are appended here ('' to skip)
force=false                   # redo stages even when their outputs are complete

help_message="Usage: $0 [options]
LibriSpeech with lhotse's prepare_librispeech: BPE units, a word 3-gram LM, a Conformer CTC model, speed perturbation.
Splits: 'train' pools --train-parts; each held-out part keeps its name (dev-clean, test-other, ...)."

# The command line, for the results table (no trailing comment: not an option).
recipe_args="$*"
. "$root/path.sh"
. "$root/utils/recipe_lib.sh"
. "$root/utils/parse_options.sh"
dist_opts=(--world-size "$world_size" --dist-timeout "$dist_timeout")
check_stages

if [ "$mini" = true ]; then
  train_parts=train-clean-5; dev_part=dev-clean-2; test_parts=""
fi
case "$lm" in estimate|published) ;; *) log "ERROR: --lm must be estimate or published, not '$lm'"; exit 1 ;; esac
# Held-out splits, the dev part first, each once.
heldout=$(echo "$dev_part $test_parts" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
heldout=${heldout% }

manifest_dir=$data_dir/manifests
lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
lm_dir=$data_dir/lm
fbank_dir=$data_dir/fbank
log_dir=$data_dir/log
model_dir=$exp_dir/$model_name

if run_stage 0; then
  log "Stage 0: prepare the LibriSpeech manifests"
  log "train split: $train_parts; held-out splits: $heldout"
  "$here/local/prepare_librispeech.sh" ${corpus_dir:+--corpus-dir "$corpus_dir"} --download-dir download \
    --train-parts "$train_parts" --dev-part "$dev_part" --test-parts "$test_parts" --nj "$nj" \
    --force "$force" --log-dir "$log_dir" "$manifest_dir"
fi

if run_stage 1; then
  log "Stage 1: BPE lang dir and word n-gram LM"
  require "$manifest_dir/librispeech_supervisions_train.jsonl.gz" 0 "$manifest_dir/.prepare_librispeech.done.json"
  "$root/steps/prepare_lang.sh" --vocab-size "$bpe_vocab_size" --force "$force" --log-dir "$log_dir" \
    "$manifest_dir/librispeech_supervisions_train.jsonl.gz" "$lang_dir"
  arpa=
  if [ "$lm" = published ]; then
    arpa=$("$here/local/download_lm.sh" --log-dir "$log_dir" download/lm)
  fi
  "$root/steps/train_lm.sh" --order "$lm_order" ${arpa:+--arpa "$arpa"} --force "$force" --log-dir "$log_dir" \
    "$lang_dir" "$lm_dir"
fi

if run_stage 2; then
  log "Stage 2: 80-dim fbank features and cut manifests"
  require "$manifest_dir/librispeech_recordings_train.jsonl.gz" 0 "$manifest_dir/.prepare_librispeech.done.json"
  "$root/steps/compute_fbank.sh" --corpus librispeech --splits "train $heldout" --nj "$nj" \
    --speed-perturb "$speed_perturb" --force "$force" \
    --log-dir "$log_dir" "$manifest_dir" "$fbank_dir"
fi

if run_stage 3; then
  log "Stage 3: train the CTC model (per-epoch WER on the dev part)"
  require "$fbank_dir/librispeech_cuts_train.jsonl.gz" 2 "$fbank_dir/.compute_fbank.done.json"
  require "$lang_dir/tokens.txt" 1 "$lang_dir/.prepare_lang.done.json"
  "$root/steps/train_ctc.sh" "${dist_opts[@]}" --corpus librispeech --dev-split "$dev_part" --num-epochs "$num_epochs" \
    --patience "$patience" --avg "$avg" \
    --start-epoch "$start_epoch" --max-duration "$max_duration" --lr "$lr" --warmup-steps "$warmup_steps" \
    --encoder "$encoder" --hidden-dim "$hidden_dim" --num-layers "$num_layers" --num-heads "$num_heads" \
    --ffn-dim "$ffn_dim" --conv-kernel-size "$conv_kernel_size" --seed "$train_seed" --device "$device" \
    --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
fi

# Stages 4-7 use the epoch that stage 3 selected (its convergence rule), unless --epoch names one.
if [ -z "$epoch" ] && { run_stage 4 || run_stage 5 || run_stage 7; }; then
  epoch=$(selected_epoch "$model_dir")
fi

if run_stage 4; then
  log "Stage 4: compile HLG, decode and score the held-out parts, bundle the model directory"
  require "$model_dir/epoch-$epoch.pt" 3 "$model_dir/.train.done.json"
  require "$lm_dir/G_${lm_order}_gram.fst.txt" 1 "$lm_dir/.train_lm_${lm_order}gram.done.json"
  "$root/steps/compile_hlg.sh" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir/G_${lm_order}_gram.fst.txt"
  "$root/steps/decode.sh" --corpus librispeech --splits "$heldout" --epoch "$epoch" --avg "$avg" \
    --search-beam "$search_beam" --output-beam "$output_beam" --max-active-states "$max_active_states" \
    --lm-scale "$lm_scale" --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  "$root/steps/bundle_model.sh" --corpus librispeech --force "$force" --log-dir "$log_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$model_dir/results-epoch-$epoch-avg-$avg.md" "$results_file"
fi

if run_stage 5; then
  log "Stage 5: decode train $dev_part into k2 lattices for sequence training"
  require "$lang_dir/HLG.pt" 4 "$lang_dir/.compile_hlg.done.json"
  "$root/steps/make_lattices.sh" "${dist_opts[@]}" --corpus librispeech --splits "train $dev_part" --epoch "$epoch" --avg "$avg" \
    --output-beam "$lattice_output_beam" --lm-scale "$lm_scale" --device "$device" --force "$force" \
    "$lang_dir" "$fbank_dir" "$model_dir"
fi

if run_stage 6; then
  log "Stage 6: Q-learning over the lattices ($reward reward)"
  require "$model_dir/lattices/stats.json" 5 "$model_dir/lattices/.make-lattices.done.json"
  "$root/steps/qlearn.sh" "${dist_opts[@]}" --splits "train $dev_part" --reward "$reward" --force "$force" "$model_dir"
  append_results "$model_dir/qlearn-$reward.md" "$results_file"
fi

if run_stage 7; then
  log "Stage 7: fine-tune with the RL objective ($reward advantages) and Hessian-free; decode like stage 4"
  require "$model_dir/lattices/train/q-$reward" 6 "$model_dir/lattices/.qlearn-$reward.done.json"
  finetune_dir=$model_dir/finetune/rl-hf-$reward
  "$root/steps/finetune.sh" "${dist_opts[@]}" --corpus librispeech --epoch "$epoch" --avg "$avg" --reward "$reward" \
    --max-iters "$hf_iters" --time-budget "$hf_time_budget" --dev-split "$dev_part" --decode-splits "$heldout" \
    --search-beam "$search_beam" --output-beam "$output_beam" \
    --max-active-states "$max_active_states" --lm-scale "$lm_scale" --device "$device" --force "$force" \
    --out-dir "$finetune_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$finetune_dir/comparison.md" "$results_file"
fi
