#!/usr/bin/env bash
# Speech enhancement recipe: the stages of utils/recipe.sh with --task se, results in egs/se/exp, data from
# egs/se/corpus.conf (see bash egs/se/run.sh --help). Stages 0-4 are shared with the other recipes and run once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/utils/recipe.sh" --task se --exp-dir "$root/egs/se/exp" --config "$root/egs/se/corpus.conf" \
  --invocation "bash egs/se/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")" "$@"
