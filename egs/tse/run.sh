#!/usr/bin/env bash
# Target speaker extraction recipe: the stages of utils/recipe.sh with --task tse, results in egs/tse/exp, data from
# egs/tse/corpus.conf (see bash egs/tse/run.sh --help). Stages 0-4 are shared with the other recipes and run once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/utils/recipe.sh" --task tse --exp-dir "$root/egs/tse/exp" --config "$root/egs/tse/corpus.conf" \
  --invocation "bash egs/tse/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")" "$@"
