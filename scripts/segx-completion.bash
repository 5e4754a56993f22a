# bash completion for segx (installed as share/bash-completion/completions/segx by `make install`;
# or: source scripts/segx-completion.bash). Commands and flags come from segx's own --help text,
# experiment names from the results DB (--db FILE on the line, else $SEGX_DB, else ./segx.db).
_segx_commands() {
  "${1:-segx}" --help 2>/dev/null | awk '/^commands:/ {f = 1; next} f && /^  [a-z]/ {print $1} f && /^$/ {exit}'
}
_segx_flags() { # SEGX COMMAND
  "$1" "$2" --help 2>/dev/null | grep -oE -- '(^|[ ,])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[ ,]*//' | sort -u
}
_segx_experiments() { # SEGX [DB]
  local db=${2:-${SEGX_DB:-segx.db}}
  [ -r "$db" ] || return 0
  "$1" query --db "$db" "SELECT name FROM experiments ORDER BY name" --format csv 2>/dev/null | tail -n +2
}
_segx() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} segx=${COMP_WORDS[0]}
  local i db=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    [ "${COMP_WORDS[i]}" = --db ] && db=${COMP_WORDS[i+1]}
  done
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$(_segx_commands "$segx") --help --version" -- "$cur"))
    return 0
  fi
  local cmd=${COMP_WORDS[1]}
  case $prev in
    --db|--runs|--out|-o) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return 0;;
    --experiment|-e) COMPREPLY=($(compgen -W "$(_segx_experiments "$segx" "$db")" -- "$cur")); return 0;;
    --backend) COMPREPLY=($(compgen -W "auto local slurm slurm-cli slurm-rest" -- "$cur")); return 0;;
    --format) COMPREPLY=($(compgen -W "table csv json markdown html" -- "$cur")); return 0;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_segx_flags "$segx" "$cmd")" -- "$cur"))
    return 0
  fi
  case $cmd in
    plan|run) COMPREPLY=($(compgen -f -X '!*.json' -- "$cur") $(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null;;
    report) # the report kinds from its usage line: segx report [cells|accuracy|...]
      local kinds; kinds=$("$segx" report --help 2>/dev/null | sed -n '1s/^[^[]*\[\([^]]*\)\].*/\1/p' | tr '|' ' ')
      COMPREPLY=($(compgen -W "$kinds" -- "$cur"));;
    *) COMPREPLY=($(compgen -W "$(_segx_experiments "$segx" "$db")" -- "$cur"));;
  esac
  return 0
}
complete -F _segx segx
