# Shared by the launch scripts (sourced, not run).

# Prints its arguments as one shell command line that can be pasted.
quote() {
  local out='' word
  for word in "$@"; do
    if [[ -n "$word" && "$word" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+="${out:+ }$word"
    else
      out+="${out:+ }'${word//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "$out"
}
