# Helpers shared by every recipe's run.sh: logging and stage bookkeeping.

# How the torch.distributed stages launch their processes (utils/launch.sh): the recipe's own
# cmd.sh when it has one (Kaldi's convention), else the repository's (local processes).
if [ -f "$(dirname "$0")/cmd.sh" ]; then
  . "$(dirname "$0")/cmd.sh"
else
  . "$RLHF_ROOT/cmd.sh"
fi

# log MESSAGE: a timestamped line naming the script and line that printed it.
log() {
  local where="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($where) $*" >&2
}

# check_stages: fail unless $stage and $stop_stage name stages that the recipe defines.
check_stages() {
  local known
  known=$(sed -nE 's/^ *log "Stage ([0-9]+):.*/\1/p' "$0" | tr '\n' ' ')
  for s in "$stage" "$stop_stage"; do
    if ! [[ " $known " == *" $s "* ]]; then
      log "ERROR: there is no stage '$s' in $0; stages are: $known(see $0 --help)"
      exit 1
    fi
  done
  if [ "$stop_stage" -lt "$stage" ]; then
    log "ERROR: --stop-stage $stop_stage is before --stage $stage"; exit 1
  fi
}

# run_stage N: true when stage N is within --stage/--stop-stage.
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# require FILE STAGE [MARKER]: fail at once, naming FILE and the stage that makes it, when FILE is
# missing, or when the completion marker MARKER of the step that makes it is (that step's last run
# failed or was interrupted, so FILE may be a stale or partial output of an earlier run).
require() {
  if [ ! -e "$1" ]; then
    log "ERROR: $1 is missing; stage $2 makes it: run $0 --stage $2 (with the same options)"
    exit 1
  fi
  if [ -n "${3:-}" ] && [ ! -f "$3" ]; then
    log "ERROR: stage $2 did not complete: $1 is there but $3 is not (the last run of stage $2 failed or was" \
      "interrupted, so $1 may be left from an earlier run); run $0 --stage $2 (with the same options)"
    exit 1
  fi
}

# require_lattices EXP_DIR SPLIT: a benchmark's input, stage 5's lattices of SPLIT, or an error
# saying how to make them.
require_lattices() {
  if [ ! -d "$1/lattices/$2" ]; then
    log "ERROR: no lattices in $1/lattices/$2; make them first: ./run.sh --stage 5 --stop-stage 5"
    exit 1
  fi
}

# lattice_hlg LANG_DIR LM_DIR LM_ORDER LATTICE_LM_ORDER: print the HLG that stage 5 decodes with:
# stage 4's <lang>/HLG.pt, or, for a lower order, <lang>/HLG_<N>gram.pt from an N-gram of the same
# transcripts, made here (sequence training's lattices from a weaker LM hold the errors it learns
# from). Uses the recipe's $force and $log_dir.
lattice_hlg() {
  if [ "$4" = "$3" ]; then
    echo "$1/HLG.pt"
    return
  fi
  local steps
  steps=$(cd "$(dirname "${BASH_SOURCE[0]}")/../steps" && pwd)
  "$steps/train_lm.sh" --order "$4" --force "$force" --log-dir "$log_dir" "$1" "$2" >&2
  "$steps/compile_hlg.sh" --out "$1/HLG_${4}gram.pt" --force "$force" --log-dir "$log_dir" "$1" \
    "$2/G_${4}_gram.fst.txt" >&2
  echo "$1/HLG_${4}gram.pt"
}

# selected_epoch MODEL_DIR: the epoch that stage 3 selected (MODEL_DIR/selected.json, written when
# training completes and removed when it starts), for the --epoch of stages 4-7.
selected_epoch() {
  require "$1/selected.json" 3 "$1/.train.done.json"
  python -c 'import json, sys; print(json.load(open(sys.argv[1]))["epoch"])' "$1/selected.json"
}

# append_results TABLE FILE: append a results table (which the step has printed) to FILE (unless
# FILE is empty), with the date, the commit and the command that made it. A table is appended
# once: re-running a complete stage does not repeat it.
append_results() {
  [ -n "$2" ] || return 0
  [ "$1.appended" -nt "$1" ] && return 0
  {
    echo
    echo "### $(basename "$(pwd)") $(date '+%Y-%m-%d %H:%M') ($(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
    echo
    echo "Command: \`$0 ${recipe_args:-}\`"
    echo
    cat "$1"
  } >> "$2"
  touch "$1.appended"
  log "Results appended to $2"
}
