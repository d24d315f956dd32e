# shellcheck shell=bash
# Logging helpers; source this file, then:
#   log "message"   -> "YYYY-MM-DD HH:MM:SS (script.sh:LINE:function) message" on stderr
#   die "message"   -> same with "ERROR: " prefix, then exit 1

# Print one log line describing the call site $1 frames up the stack.
# Frame 0 is this helper, frame 1 is log/die, so callers pass 1 to report
# whoever called log/die.  BASH_LINENO[n] is the line (in BASH_SOURCE[n+1])
# from which FUNCNAME[n] was called.
__log_at() {
  local n=$1; shift
  local file=${BASH_SOURCE[n+1]:-$0}
  printf '%s (%s:%s:%s) %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" \
    "${file##*/}" "${BASH_LINENO[n]}" "${FUNCNAME[n+1]:-main}" "$*" >&2
}

log() { __log_at 1 "$@"; }

die() { __log_at 1 "ERROR: $*"; exit 1; }
