#!/usr/bin/env bash
# Lip-to-speech recipe: the stages of utils/recipe.sh with --task l2s, results in egs/l2s/exp, data from
# egs/l2s/corpus.conf (see bash egs/l2s/run.sh --help). Stages 0-4 are shared with the other recipes and run once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/utils/recipe.sh" --task l2s --exp-dir "$root/egs/l2s/exp" --config "$root/egs/l2s/corpus.conf" \
  --invocation "bash egs/l2s/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")" "$@"
