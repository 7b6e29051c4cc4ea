#!/usr/bin/env bash
# Benchmark: the lattice sweeps of stage 7's objective (frame reward: J and its gradient; edit
# reward: arc posteriors and sampled paths), compiled kernels vs the torch code, on the batches one
# Hessian-free iteration's gradient visits; k2's get_arc_post and random_paths for comparison.
# Run after stage 5 (./run.sh --stage 5 --stop-stage 5). Not part of ./test.sh. The table (with the
# load average) is printed and appended to RESULTS.md.
#   local/bench_objective.sh [--split train] [--max-shards N] [--grad-fraction 0.25] [--num-paths 8]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
exp_dir=exp/ctc_tdnn          # the model directory whose lattices/ to use
split=train                   # which split's lattices
max_shards=                   # use the first N shards only (empty: all)
batch_frames=12000            # padded output frames per batch (stage 7's --batch-frames)
grad_fraction=0.25            # share of the batches in one HF gradient (stage 7's --grad-fraction)
num_paths=8                   # sampled paths per lattice (stage 7's --num-paths)
seed=0                        # seed of the batch draw and the sampled paths
repeats=3                     # runs of each implementation; the fastest counts
threads=1                     # torch threads (the compiled kernels use one)
results_file=RESULTS.md       # append the table here ('' to skip)

help_message="Usage: $0 [options]"
recipe_args="$*"
. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"

require_lattices "$exp_dir" "$split"
out=$exp_dir/bench-objective-$split.md
log "Benchmarking the objective's sweeps on $exp_dir/lattices/$split (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
OMP_NUM_THREADS=$threads python -m rlhf.bin.bench_objective ${max_shards:+--max-shards "$max_shards"} \
  --batch-frames "$batch_frames" --grad-fraction "$grad_fraction" --num-paths "$num_paths" --seed "$seed" \
  --repeats "$repeats" --threads "$threads" --out "$out" "$exp_dir/lattices/$split"
append_results "$out" "$results_file"
