#!/usr/bin/env bash
# The default recipe: English speech synthesized offline with eSpeak NG (the embedded corpus).
# Run from this directory: ./run.sh [--stage N] [--stop-stage M] [--name value ...]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

stage=0                       # first stage to run
stop_stage=7                  # last stage to run
nj=2                          # parallel jobs (stages 0 and 2)
world_size=1                  # processes of the torch.distributed stages 3, 5, 6, 7 (launcher: cmd.sh)
dist_timeout=600              # seconds a rank waits for the others before the job fails
seed=1                        # corpus seed: same seed, same corpus, byte for byte
corpus_dir=download/synth     # where stage 0 writes the synthesized corpus
data_dir=data                 # manifests, lang, LM and features go here
exp_dir=exp                   # models and decoding results go here (stage 3 on)
num_train=6000                # training utterances
num_dev=400                   # dev utterances (stage 3 judges and stage 7 selects on them)
num_test=1000                 # test utterances (1000 over 20 voices: enough to resolve the fine-tuning gains, RESULTS.md)
num_train_speakers=100        # training voices
num_dev_speakers=8            # dev voices (disjoint from training)
num_test_speakers=20          # test voices (disjoint from training and dev)
snr_min=5                     # lowest SNR of the additive noise, dB
snr_max=25                    # highest SNR of the additive noise, dB
reverb_prob=0.5               # share of utterances with reverberation
bpe_vocab_size=200            # sentencepiece vocabulary size; lang dir is data/lang_bpe_<N>
lm_order=3                    # word n-gram LM order
speed_perturb=false           # stage 2: add 0.9x and 1.1x speed copies of the training utterances
model_name=ctc_tdnn           # the model's directory: <exp_dir>/<model_name>
num_epochs=20                 # most training epochs (stage 3; what fits the 45-minute recipe on 2 cores, not converged: RESULTS.md)
patience=3                    # stop when the dev WER and loss made no new best for N epochs (0: never)
start_epoch=1                 # resume training from <exp_dir>/<model_name>/epoch-(N-1).pt
max_duration=40               # seconds of audio per training batch (40 against 120: no CTC plateau, RESULTS.md)
lr=0.002                      # peak Adam learning rate
warmup_steps=500              # learning-rate warm-up (steps)
lr_schedule=inv-sqrt          # after warm-up: inv-sqrt (1/sqrt(step)) or cosine (to 0 at --num-epochs)
lr_epochs=0                   # also decay the learning rate with the epoch (icefall's Eden factor E; 0: off)
encoder=tdnn                  # tdnn, or conformer (torchaudio's Conformer)
hidden_dim=256                # encoder width
num_layers=8                  # encoder blocks
dropout=0.1                   # dropout in every encoder block
time_warp_factor=0            # SpecAugment's time warp in frames (icefall's 80 is for 15 s utterances; these last 3 s)
feature_masks=0               # SpecAugment's frequency masks (icefall's 2 make the CTC plateau last: RESULTS.md)
num_heads=4                   # conformer attention heads
ffn_dim=1024                  # conformer feed-forward size
train_seed=42                 # model initialization, batch order and dropout
device=auto                   # auto (GPU when there is one), cpu, cuda:0, ...
epoch=                        # stages 4-7 use this epoch (default: the one stage 3 selected, selected.json)
avg=5                         # judge (stage 3) and decode an epoch averaged with the K-1 before it
search_beam=20                # lattice search beam (stage 4)
output_beam=8                 # lattice output beam
max_active_states=10000       # most active states per frame in the lattice search
lm_scale=0.5                  # weight of the HLG graph (LM) scores (tuned on dev; the steps' default)
lattice_splits="train dev"    # stage 5: splits decoded into training lattices
lattice_output_beam=8         # stage 5: lattice output beam (search beam and LM scale as in stage 4)
lattice_lm_order=3            # stage 5: word n-gram order of the lattices' LM (below --lm-order: a weaker LM, more errors)
lattice_shard_size=500        # stage 5: cuts per lattice shard (the unit of work of one rank)
reward=frame                  # stage 6: frame (sMBR: agreement with the forced alignment) or edit (minus errors)
alpha=1.0                     # stage 6: Q-learning rate (1: one sweep is exact)
gamma=1.0                     # stage 6: discount
temperature=0                 # stage 6: 0 for max (Q-learning), > 0 for the soft (log-sum-exp) values
kappa=1.0                     # stage 7: acoustic scale of the re-scored lattice arcs
ctc_weight=0.0                # stage 7: weight of the CTC regularizer
time_masks=false              # stage 7: SpecAugment's time masks on the training batches, as stage 3
regenerate_lattices=false     # stage 7: decode each update's lattices anew with the current model (as stage 5)
trainable=all                 # stage 7: all, or top-K (output layer and the last K-1 encoder blocks)
hf_iters=12                   # stage 7: Hessian-free iterations ...
hf_time_budget=0              # stage 7: ... or seconds of optimization (0: no limit)
grad_fraction=0.25            # stage 7: share of the training lattices in each HF gradient
curvature_fraction=0.1        # stage 7: share of those in the curvature sample
heldout_utts=150              # stage 7: training utterances held out for rho and the line search
cg_max_iters=12               # stage 7: most CG iterations per HF iteration
init_damping=0.01             # stage 7: initial Levenberg-Marquardt lambda
batch_frames=12000            # stage 7: padded output frames per batch (smaller: more batches to share out with --world-size)
results_file=RESULTS.md       # decoding results are appended here ('' to skip)
force=false                   # redo stages even when their outputs are complete

help_message="Usage: $0 [options]
The default recipe on the embedded synthesized corpus. Each stage skips work whose
outputs are complete for the same options and inputs; --force true redoes it."

# The command line, for the results table (no trailing comment: not an option).
recipe_args="$*"
. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"
check_stages

dist_opts=(--world-size "$world_size" --dist-timeout "$dist_timeout")
manifest_dir=$data_dir/manifests
lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
lm_dir=$data_dir/lm
fbank_dir=$data_dir/fbank
log_dir=$data_dir/log
model_dir=$exp_dir/$model_name

if run_stage 0; then
  log "Stage 0: synthesize the corpus and prepare its Lhotse manifests"
  "$here/local/synthesize_corpus.sh" --seed "$seed" --nj "$nj" \
    --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test" \
    --num-train-speakers "$num_train_speakers" --num-dev-speakers "$num_dev_speakers" \
    --num-test-speakers "$num_test_speakers" --snr-min "$snr_min" --snr-max "$snr_max" \
    --reverb-prob "$reverb_prob" --force "$force" --log-dir "$log_dir" "$corpus_dir"
  "$here/local/prepare_manifests.sh" --force "$force" --log-dir "$log_dir" "$corpus_dir" "$manifest_dir"
  log "Stage 0 done: corpus in $corpus_dir, manifests in $manifest_dir"
fi

if run_stage 1; then
  log "Stage 1: BPE lang dir and word n-gram LM"
  require "$manifest_dir/synth_supervisions_train.jsonl.gz" 0 "$manifest_dir/.prepare_manifests.done.json"
  "$here/steps/prepare_lang.sh" --vocab-size "$bpe_vocab_size" --force "$force" --log-dir "$log_dir" \
    "$manifest_dir/synth_supervisions_train.jsonl.gz" "$lang_dir"
  "$here/steps/train_lm.sh" --order "$lm_order" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir"
  log "Stage 1 done: $lang_dir, $lm_dir/G_${lm_order}_gram.fst.txt"
fi

if run_stage 2; then
  log "Stage 2: 80-dim fbank features and cut manifests"
  for split in train dev test; do
    require "$manifest_dir/synth_recordings_$split.jsonl.gz" 0 "$manifest_dir/.prepare_manifests.done.json"
  done
  "$here/steps/compute_fbank.sh" --corpus synth --nj "$nj" --speed-perturb "$speed_perturb" --force "$force" \
    --log-dir "$log_dir" "$manifest_dir" "$fbank_dir"
  log "Stage 2 done: cuts in $fbank_dir"
fi

if run_stage 3; then
  log "Stage 3: train the baseline CTC model (k2 CTC loss)"
  require "$fbank_dir/synth_cuts_train.jsonl.gz" 2 "$fbank_dir/.compute_fbank.done.json"
  require "$lang_dir/tokens.txt" 1 "$lang_dir/.prepare_lang.done.json"
  "$here/steps/train_ctc.sh" "${dist_opts[@]}" --num-epochs "$num_epochs" \
    --patience "$patience" --avg "$avg" --start-epoch "$start_epoch" \
    --max-duration "$max_duration" --lr "$lr" --warmup-steps "$warmup_steps" --lr-schedule "$lr_schedule" --lr-epochs "$lr_epochs" \
    --encoder "$encoder" --hidden-dim "$hidden_dim" --num-layers "$num_layers" --num-heads "$num_heads" \
    --ffn-dim "$ffn_dim" --dropout "$dropout" --time-warp-factor "$time_warp_factor" --feature-masks "$feature_masks" \
    --seed "$train_seed" --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  log "Stage 3 done: checkpoints, training-curve.png and tensorboard/ in $model_dir"
fi

# Stages 4-7 use the epoch that stage 3 selected (its convergence rule), unless --epoch names one.
if [ -z "$epoch" ] && { run_stage 4 || run_stage 5 || run_stage 7; }; then
  epoch=$(selected_epoch "$model_dir")
fi

if run_stage 4; then
  log "Stage 4: compile HLG, decode dev and test, score"
  require "$model_dir/epoch-$epoch.pt" 3 "$model_dir/.train.done.json"
  require "$lm_dir/G_${lm_order}_gram.fst.txt" 1 "$lm_dir/.train_lm_${lm_order}gram.done.json"
  "$here/steps/compile_hlg.sh" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir/G_${lm_order}_gram.fst.txt"
  "$here/steps/decode.sh" --epoch "$epoch" --avg "$avg" --search-beam "$search_beam" \
    --output-beam "$output_beam" --max-active-states "$max_active_states" --lm-scale "$lm_scale" \
    --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  "$here/steps/bundle_model.sh" --force "$force" --log-dir "$log_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$model_dir/results-epoch-$epoch-avg-$avg.md" "$results_file"
  log "Stage 4 done: recogs-*, errs-*, wer-summary-* under $model_dir/<method>/"
fi

if run_stage 5; then
  log "Stage 5: decode ${lattice_splits} into k2 lattices for sequence training"
  require "$model_dir/epoch-$epoch.pt" 3 "$model_dir/.train.done.json"
  require "$lang_dir/HLG.pt" 4 "$lang_dir/.compile_hlg.done.json"
  hlg=$(lattice_hlg "$lang_dir" "$lm_dir" "$lm_order" "$lattice_lm_order")
  "$here/steps/make_lattices.sh" "${dist_opts[@]}" --splits "$lattice_splits" --epoch "$epoch" --avg "$avg" \
    --search-beam "$search_beam" --output-beam "$lattice_output_beam" --shard-size "$lattice_shard_size" --max-active-states "$max_active_states" \
    --lm-scale "$lm_scale" --hlg "$hlg" --device "$device" --force "$force" "$lang_dir" "$fbank_dir" "$model_dir"
  log "Stage 5 done: shards and stats.json under $model_dir/lattices/"
fi

if run_stage 6; then
  log "Stage 6: Q-learning over the lattices ($reward reward)"
  require "$model_dir/lattices/stats.json" 5 "$model_dir/lattices/.make-lattices.done.json"
  "$here/steps/qlearn.sh" "${dist_opts[@]}" --splits "$lattice_splits" --reward "$reward" --alpha "$alpha" --gamma "$gamma" \
    --temperature "$temperature" --force "$force" "$model_dir"
  append_results "$model_dir/qlearn-$reward.md" "$results_file"
  log "Stage 6 done: per-arc Q, V, advantages in $model_dir/lattices/<split>/q-$reward/"
fi

if run_stage 7; then
  log "Stage 7: fine-tune the baseline with the RL objective ($reward advantages) and Hessian-free"
  require "$model_dir/lattices/train/q-$reward" 6 "$model_dir/lattices/.qlearn-$reward.done.json"
  finetune_dir=$model_dir/finetune/rl-hf-$reward
  "$here/steps/finetune.sh" "${dist_opts[@]}" --epoch "$epoch" --avg "$avg" --reward "$reward" --kappa "$kappa" \
    --ctc-weight "$ctc_weight" --time-masks "$time_masks" --regenerate-lattices "$regenerate_lattices" \
    --trainable "$trainable" --max-iters "$hf_iters" --time-budget "$hf_time_budget" \
    --grad-fraction "$grad_fraction" --curvature-fraction "$curvature_fraction" --heldout-utts "$heldout_utts" \
    --hf-cg-max-iters "$cg_max_iters" --hf-init-damping "$init_damping" --batch-frames "$batch_frames" --search-beam "$search_beam" \
    --output-beam "$output_beam" --max-active-states "$max_active_states" --lm-scale "$lm_scale" \
    --device "$device" --force "$force" --out-dir "$finetune_dir" "$lang_dir" "$fbank_dir" "$model_dir"
  append_results "$finetune_dir/comparison.md" "$results_file"
  log "Stage 7 done: $finetune_dir/best.pt (decoded: $finetune_dir/<method>/), comparison.md and .png"
fi
