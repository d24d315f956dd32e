#!/usr/bin/env bash
# Metis-Omni recipe: the stages of utils/recipe.sh with --task omni, results in egs/omni/exp, data from
# egs/omni/corpus.conf (see bash egs/omni/run.sh --help). One model for TTS, VC, SE and TSE
# (conf/<conf>/finetune_omni.yaml), decoded on each task's test set and on text-guided TSE, scored beside
# the single-task models of egs/{tts,vc,se,tse} (run those first for the comparison). Stages 0-4 are
# shared with the other recipes and run once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec bash "$root/utils/recipe.sh" --task omni --exp-dir "$root/egs/omni/exp" --config "$root/egs/omni/corpus.conf" \
  --invocation "bash egs/omni/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")" "$@"
