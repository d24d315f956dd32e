#!/usr/bin/env bash
# Voice conversion recipe: the stages of utils/recipe.sh with --task vc, results in egs/vc/exp, data from
# egs/vc/corpus.conf (see bash egs/vc/run.sh --help). Stages 0-4 are shared with the other recipes and run once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/utils/recipe.sh" --task vc --exp-dir "$root/egs/vc/exp" --config "$root/egs/vc/corpus.conf" \
  --invocation "bash egs/vc/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")" "$@"
