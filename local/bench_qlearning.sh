#!/usr/bin/env bash
# Benchmark: Q-learning by the compiled kernel vs the torch code, k2's backward pass and the plain
# Python per-arc loop, on the stage-5 lattices; with the memory-bandwidth bound (a numpy copy).
# Run after stage 5 (./run.sh --stage 5 --stop-stage 5). Not part of ./test.sh: the plain loop
# takes seconds to minutes. The table (with the load average) is printed and appended to RESULTS.md.
#   local/bench_qlearning.sh [--split train] [--max-shards N] [--threads 1] [--alpha 1.0] [--gamma 1.0]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
exp_dir=exp/ctc_tdnn          # the model directory whose lattices/ to use
split=train                   # which split's lattices
max_shards=                   # use the first N shards only (empty: all)
threads=1                     # torch threads (the compiled kernels use one)
repeats=5                     # runs of each fast implementation; the fastest counts
alpha=1.0                     # Q-learning rate
gamma=1.0                     # discount
temperature=0.0               # 0: hard max; > 0: soft values (the plain loop is then not run)
results_file=RESULTS.md       # append the table here ('' to skip)

help_message="Usage: $0 [options]"
recipe_args="$*"
. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"

require_lattices "$exp_dir" "$split"
out=$exp_dir/bench-qlearning-$split.md
log "Benchmarking Q-learning on $exp_dir/lattices/$split (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
OMP_NUM_THREADS=$threads python -m rlhf.bin.bench_qlearning ${max_shards:+--max-shards "$max_shards"} \
  --threads "$threads" --repeats "$repeats" --alpha "$alpha" --gamma "$gamma" --temperature "$temperature" \
  --out "$out" "$exp_dir/lattices/$split"
append_results "$out" "$results_file"
