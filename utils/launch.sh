#!/usr/bin/env bash
# utils/launch.sh <python-module> [--world-size N] [--nodes M] [--cmd "LAUNCHER"] [step options...]
#
# Runs a step's Python module as N processes (ranks) of one torch.distributed job: N/M per
# machine on M machines. The launcher is a torchrun command line without --nproc_per_node
# (this script adds it); it comes from --cmd, else $launch_cmd (cmd.sh), else
# "python -m rlhf.torchrun --standalone" (local processes on this machine; rlhf.torchrun is
# torch's torchrun, its --standalone on a free port). With N = 1 on one machine the
# module runs as a plain process, without torchrun. Exit status: the job's (non-zero when any
# rank fails; torchrun then stops the other ranks).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "Usage: $0 <python-module> [--world-size N] [--nodes M] [--cmd LAUNCHER] [step options]" >&2; exit 1
fi
module=$1; shift
world_size=1
nodes=${num_nodes:-1}
cmd=${launch_cmd:-python -m rlhf.torchrun --standalone}
while [ $# -gt 0 ]; do
  case "$1" in
    --world-size) world_size=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --cmd) cmd=$2; shift 2 ;;
    *) break ;;
  esac
done
if ! [[ "$world_size" =~ ^[1-9][0-9]*$ && "$nodes" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --world-size ($world_size) and --nodes ($nodes) must be positive integers" >&2; exit 1
fi
if [ $((world_size % nodes)) -ne 0 ]; then
  echo "$0: --world-size $world_size is not a multiple of --nodes $nodes (processes per machine)" >&2; exit 1
fi
if [ "$world_size" -eq 1 ] && [ "$nodes" -eq 1 ]; then
  exec python -m "$module" "$@"
fi
# shellcheck disable=SC2086  # the launcher is a command line: split it into words
exec $cmd --nproc_per_node $((world_size / nodes)) -m "$module" "$@"
