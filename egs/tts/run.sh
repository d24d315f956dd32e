#!/usr/bin/env bash
# Zero-shot TTS recipe: the stages of utils/recipe.sh with --task tts, results in egs/tts/exp, data from
# egs/tts/corpus.conf (see bash egs/tts/run.sh --help). Stages 0-4 are shared with the other recipes and run once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/utils/recipe.sh" --task tts --exp-dir "$root/egs/tts/exp" --config "$root/egs/tts/corpus.conf" \
  --invocation "bash egs/tts/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")" "$@"
