# shellcheck shell=bash
# Kaldi-style option parsing; meant to be *sourced* by a recipe script after it
# has defined its default variables (and, optionally, $help_message):
#
#   stage=0; nj=2; use_gpu=false
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh
#
# "--opt-name value" and "--opt-name=value" set $opt_name (dashes become
# underscores), but only if that variable already exists.  "--config FILE"
# sources FILE (name=value lines) before any other option is applied, so
# command-line options always win.  Parsing stops at the first non-option
# argument or at "--" (which is removed); the rest stays in "$@".
# Safe under `set -euo pipefail`.  Helper variables use the __po_ prefix and
# are unset at the end.

__po_script=${0##*/}

__po_fail() {  # print an error (plus usage, if asked) to stderr and exit 1
  echo "$__po_script: $1" >&2
  if [ "${2:-}" = usage ] && [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message" >&2
  fi
  exit 1
}

# Pass 1: find and source --config files, so that they only provide defaults.
__po_i=1
while [ "$__po_i" -le $# ]; do
  __po_arg=${!__po_i}
  __po_cfg=
  case $__po_arg in
    --) break ;;
    --config=*) __po_cfg=${__po_arg#--config=} ;;
    --config)
      __po_i=$((__po_i + 1))
      [ "$__po_i" -le $# ] || __po_fail "option --config needs a value"
      __po_cfg=${!__po_i} ;;
    --*=*) ;;
    --*) __po_i=$((__po_i + 1)) ;;  # skip this option's value
    *) break ;;
  esac
  if [ -n "$__po_cfg" ]; then
    [ -f "$__po_cfg" ] || __po_fail "config file '$__po_cfg' not found"
    # A bare name would make `.` search $PATH first; force a path.
    case $__po_cfg in */*) ;; *) __po_cfg=./$__po_cfg ;; esac
    # shellcheck disable=SC1090  # the config file is the caller's choice
    . "$__po_cfg"
  fi
  __po_i=$((__po_i + 1))
done

# Pass 2: apply the options, consuming them from "$@".
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    --help|-h)
      printf '%s\n' "${help_message:-Usage: $__po_script [options] [args]}"
      exit 0 ;;
    --*=*) __po_opt=${1%%=*}; __po_val=${1#*=}; shift ;;
    --*)
      [ $# -ge 2 ] || __po_fail "option $1 needs a value"
      __po_opt=$1; __po_val=$2; shift 2 ;;
    *) break ;;
  esac
  [ "$__po_opt" = --config ] && continue  # already handled in pass 1

  __po_var=${__po_opt#--}
  __po_var=${__po_var//-/_}
  # Check the name is a valid identifier before using ${!name} (which would
  # otherwise abort with "invalid variable name"), then that it is defined.
  if ! [[ $__po_var =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!__po_var+x}" ]; then
    __po_fail "unknown option $__po_opt" usage
  fi
  # Variables that default to true/false are booleans and must stay so.
  case ${!__po_var} in
    true|false)
      case $__po_val in
        true|false) ;;
        *) __po_fail "option $__po_opt expects true or false, got '$__po_val'" ;;
      esac ;;
  esac
  printf -v "$__po_var" '%s' "$__po_val"
done

unset -v __po_script __po_i __po_arg __po_cfg __po_opt __po_val __po_var
unset -f __po_fail
true  # the sourcing `.` must return 0, or `set -e` would abort the caller
