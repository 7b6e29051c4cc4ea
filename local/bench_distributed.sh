#!/usr/bin/env bash
# Benchmark: the torch.distributed stages as one process and as several, one after the other on
# this machine, on the default recipe's baseline:
#   stage 5  lattice generation for the train split (--splits train)
#   stage 6  Q-learning over those lattices (frame reward)
#   stage 7  one Hessian-free iteration (the iteration's own time, and the whole step's)
# Configurations (--configs): "P:T" runs P processes with T threads each (OMP_NUM_THREADS).
# The default compares one process with all cores' threads (what ./run.sh does) and with one,
# against two single-threaded processes (what ./run.sh --world-size 2 does). Each configuration
# works in its own <out-dir>/<config>/ (the baseline's checkpoints linked in); the lattices and
# Q-values are compared across configurations (<out-dir>/equality.txt). Table: <out-dir>/results.md
# (also appended to RESULTS.md). Run after stage 4. Not part of ./test.sh: about 15 min here.
#   local/bench_distributed.sh [--configs "1:2 1:1 2:1"]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
data_dir=data                 # manifests, lang, features (as in run.sh)
bpe_vocab_size=200            # lang dir is <data_dir>/lang_bpe_<N>
exp_dir=exp/ctc_tdnn          # the baseline's directory (checkpoints)
epoch=12                      # the baseline: epoch-N.pt ...
avg=3                         # ... averaged with the epochs before it
lm_scale=0.5                  # as stage 4
configs="1:2 1:1 2:1"         # processes:threads per process, space-separated
out_dir=exp/bench-distributed # one directory per configuration
results_file=RESULTS.md       # append the table here ('' to skip)

help_message="Usage: $0 [options]"
recipe_args="$*"
. "$here/path.sh"
. "$here/utils/recipe_lib.sh"
. "$here/utils/parse_options.sh"

lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
require "$lang_dir/HLG.pt" 4
mkdir -p "$out_dir"

now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }
rows=()
for config in $configs; do
  procs=${config%%:*}
  threads=${config#*:}
  dir=$out_dir/p${procs}-t${threads}
  mkdir -p "$dir"
  for e in $(seq $((epoch - avg + 1)) "$epoch"); do
    ln -sf "$(realpath "$exp_dir/epoch-$e.pt")" "$dir/epoch-$e.pt"
  done
  export OMP_NUM_THREADS=$threads
  log "$procs process(es) x $threads thread(s): stage 5 (train lattices)"
  t0=$(now)
  "$here/steps/make_lattices.sh" --world-size "$procs" --splits train --epoch "$epoch" --avg "$avg" \
    --lm-scale "$lm_scale" --force true "$lang_dir" "$data_dir/fbank" "$dir" > "$dir/make-lattices.out" 2>&1
  t1=$(now)
  log "$procs process(es) x $threads thread(s): stage 6 (frame reward)"
  "$here/steps/qlearn.sh" --world-size "$procs" --splits train --reward frame --force true "$dir" \
    > "$dir/qlearn.out" 2>&1
  t2=$(now)
  log "$procs process(es) x $threads thread(s): stage 7, one Hessian-free iteration"
  "$here/steps/finetune.sh" --world-size "$procs" --epoch "$epoch" --avg "$avg" --lm-scale "$lm_scale" \
    --max-iters 1 --decode-splits "" --force true --out-dir "$dir/finetune" \
    "$lang_dir" "$data_dir/fbank" "$dir" > "$dir/finetune.out" 2>&1
  t3=$(now)
  hf=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'][0]['seconds'])" "$dir/finetune/progress.json")
  rows+=("$config $(elapsed "$t0" "$t1") $(elapsed "$t1" "$t2") $hf $(elapsed "$t2" "$t3")")
  log "$config: stage 5 $(elapsed "$t0" "$t1") s, stage 6 $(elapsed "$t1" "$t2") s, HF iteration $hf s"
done
unset OMP_NUM_THREADS

log "Checking the lattices and Q-values of each configuration against another's"
python - "$out_dir" $configs <<'EOF' | tee "$out_dir/equality.txt"
import sys
from pathlib import Path

import torch

from rlhf.lattice_shards import LatticeShard, shard_paths

out, configs = Path(sys.argv[1]), sys.argv[2:]
dirs = [out / f"p{c.split(':')[0]}-t{c.split(':')[1]}" / "lattices" / "train" for c in configs]
threads = [c.split(":")[1] for c in configs]


def load(d, path):
    return LatticeShard.load(d / path.name), torch.load(d / "q-frame" / path.name)


# Each against the first configuration with as many threads per process (the thread count
# changes the network's float sums, hence the scores), else against the first configuration.
for i, d in enumerate(dirs[1:], 1):
    j = threads.index(threads[i])
    ref = dirs[j if j != i else 0]
    shards = shard_paths(ref)
    topology = identical = 0
    largest = 0.0
    for path in shards:
        (a, qa), (b, qb) = load(ref, path), load(d, path)
        if a.lattice.num_arcs == b.lattice.num_arcs and torch.equal(a.lattice.arcs.values()[:, :3],
                                                                      b.lattice.arcs.values()[:, :3]):
            topology += 1
            largest = max(largest, float((a.lattice.scores - b.lattice.scores).abs().max()))
            identical += torch.equal(a.lattice.scores, b.lattice.scores) and torch.equal(qa["advantage"], qb["advantage"])
    print(f"{d.parent.parent.name} against {ref.parent.parent.name}: {len(shards)} shards, same arcs (states and "
          f"labels) in {topology}, bit-identical scores and advantages in {identical}, largest score difference "
          f"{largest:.2g}")
EOF

python - "$out_dir/results.md" "${rows[@]}" <<'EOF'
import sys
out, rows = sys.argv[1], [r.split() for r in sys.argv[2:]]
base = {name: float(v) for name, v in zip(("lat", "q", "hf", "ft"), rows[0][1:])}
lines = ["1 vs several processes on this machine (torch.distributed, gloo), one after the other. "
         "Speed-up: the first row's time over the row's.", "",
         "| processes x threads | stage 5: train lattices (s) | speed-up | stage 6: Q-learning (s) | speed-up "
         "| one HF iteration (s) | speed-up | whole stage 7 step (s) |",
         "|---|---|---|---|---|---|---|---|"]
for config, lat, q, hf, ft in rows:
    p, t = config.split(":")
    lines.append(f"| {p} x {t} | {float(lat):.1f} | {base['lat'] / float(lat):.2f} | {float(q):.1f} | "
                 f"{base['q'] / float(q):.2f} | {float(hf):.1f} | {base['hf'] / float(hf):.2f} | {float(ft):.1f} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
append_results "$out_dir/results.md" "$results_file"
