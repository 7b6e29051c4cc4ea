# Kaldi-style option parsing for recipes. Source it after declaring every option as a
# shell variable with a trailing comment, e.g.
#
#   nj=2            # parallel jobs
#   . utils/parse_options.sh
#
# Then `--name value` sets $name (dashes become underscores), `--name=value` works too,
# an undeclared option is an error, an option whose default is true/false only takes
# true/false, and --help prints $help_message, the recipe's stages (its `log "Stage N: ..."`
# lines) and every option with its default and comment. Parsing stops at the first
# argument that is not an option; the rest stay in "$@".

_rlhf_script=${0}

_rlhf_print_help() {
  [ -n "${help_message:-}" ] && printf '%s\n\n' "$help_message"
  if grep -qE '^ *log "Stage [0-9]+:' "$_rlhf_script"; then
    echo "Stages:"
    sed -nE 's/^ *log "Stage ([0-9]+): (.*)"$/  \1  \2/p' "$_rlhf_script"
    echo
  fi
  echo "Options (--name value):"
  sed -nE '/parse_options\.sh/q; s/^([a-z][a-z0-9_]*)=([^#]*[^ #])? *# *(.*)$/\1|\2|\3/p' "$_rlhf_script" |
    while IFS='|' read -r name value comment; do
      printf '  --%-22s %s (default: %s)\n' "${name//_/-}" "$comment" "${value:-\"\"}"
    done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _rlhf_print_help; exit 0 ;;
    --*=*) _rlhf_name=${1%%=*}; _rlhf_value=${1#*=}; shift ;;
    --*)
      _rlhf_name=$1
      if [ $# -lt 2 ]; then echo "$_rlhf_script: option $1 needs a value" >&2; exit 1; fi
      _rlhf_value=$2; shift 2 ;;
    *) break ;;
  esac
  _rlhf_var=${_rlhf_name#--}; _rlhf_var=${_rlhf_var//-/_}
  if ! [[ $_rlhf_var =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!_rlhf_var+set}" ]; then
    echo "$_rlhf_script: unknown option $_rlhf_name (see $_rlhf_script --help)" >&2; exit 1
  fi
  case "${!_rlhf_var}" in
    true|false)
      if [ "$_rlhf_value" != true ] && [ "$_rlhf_value" != false ]; then
        echo "$_rlhf_script: option $_rlhf_name takes true or false, not '$_rlhf_value'" >&2; exit 1
      fi ;;
  esac
  printf -v "$_rlhf_var" '%s' "$_rlhf_value"
done
unset _rlhf_name _rlhf_value _rlhf_var
