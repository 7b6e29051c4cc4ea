#!/usr/bin/env bash
# The default recipe: English speech synthesized offline with eSpeak NG (the embedded corpus).
# Run from this directory: ./run.sh [--stage N] [--stop-stage M] [--name value ...]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

stage=0                       # first stage to run
stop_stage=2                  # last stage to run
nj=2                          # parallel jobs
seed=1                        # corpus seed: same seed, same corpus, byte for byte
corpus_dir=download/synth     # where stage 0 writes the synthesized corpus
data_dir=data                 # manifests, lang, LM and features go here
exp_dir=exp                   # models and decoding results go here (stage 3 on)
num_train=6000                # training utterances
num_dev=200                   # dev utterances
num_test=200                  # test utterances
num_train_speakers=100        # training voices
num_dev_speakers=8            # dev voices (disjoint from training)
num_test_speakers=8           # test voices (disjoint from training and dev)
snr_min=10                    # lowest SNR of the additive noise, dB
snr_max=30                    # highest SNR of the additive noise, dB
reverb_prob=0.3               # share of utterances with reverberation
bpe_vocab_size=200            # sentencepiece vocabulary size; lang dir is data/lang_bpe_<N>
lm_order=3                    # word n-gram LM order
force=false                   # redo stages even when their outputs are complete

help_message="Usage: $0 [options]
The default recipe on the embedded synthesized corpus. Each stage skips work whose
outputs are complete for the same options and inputs; --force true redoes it."

. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"
check_stages

manifest_dir=$data_dir/manifests
lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
lm_dir=$data_dir/lm
fbank_dir=$data_dir/fbank
log_dir=$data_dir/log

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
  require "$manifest_dir/synth_supervisions_train.jsonl.gz" 0
  "$here/steps/prepare_lang.sh" --vocab-size "$bpe_vocab_size" --force "$force" --log-dir "$log_dir" \
    "$manifest_dir/synth_supervisions_train.jsonl.gz" "$lang_dir"
  "$here/steps/train_lm.sh" --order "$lm_order" --force "$force" --log-dir "$log_dir" "$lang_dir" "$lm_dir"
  log "Stage 1 done: $lang_dir, $lm_dir/G_${lm_order}_gram.fst.txt"
fi

if run_stage 2; then
  log "Stage 2: 80-dim fbank features and cut manifests"
  for split in train dev test; do
    require "$manifest_dir/synth_recordings_$split.jsonl.gz" 0
  done
  "$here/steps/compute_fbank.sh" --corpus synth --nj "$nj" --force "$force" --log-dir "$log_dir" \
    "$manifest_dir" "$fbank_dir"
  log "Stage 2 done: cuts in $fbank_dir"
fi
