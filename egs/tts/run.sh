#!/usr/bin/env bash
# Zero-shot TTS recipe on the embedded corpus (conf/mini) or your own corpus (conf/full).
#
#   bash egs/tts/run.sh                               # every stage that exists, embedded corpus
#   bash egs/tts/run.sh --stage 0 --stop-stage 0      # only build and validate the corpus
#   bash egs/tts/run.sh --mini-size tiny --nj 2       # the small CI-sized corpus
#
# Stages (a stage runs when stage <= N <= stop_stage; each writes a .done marker after its outputs):
#   0 data      synthesise the embedded corpus + SE/TSE/VC sets (shared by all recipes), validate
#   7 score     score every exp/*/decode_* and the ground truth (the ceiling); write RESULTS.md
#
# Stages 1-6 (ssl, tokenize, codec, pretrain, finetune, decode) are not in the toolkit yet.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

stage=0
stop_stage=100
nj=2
mini_dir=$root/data/mini   # shared by every recipe: built once, reused
mini_size=default          # default (16 speakers, ~45 min) or tiny (CI: 6 speakers)
seed=0
exp_dir=$root/egs/tts/exp
test_set=mini_test
score_opts=""              # extra options for metis score, e.g. "--asr /models/whisper-large-v3"
help_message=$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//')

. "$root/utils/parse_options.sh"
. "$root/utils/log.sh"

command -v metis >/dev/null || die "the metis command is not installed; run: bash tools/install.sh"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data"
  bash "$root/local/mini/data.sh" --mini-dir "$mini_dir" --mini-size "$mini_size" --seed "$seed" --nj "$nj"
  log "Stage 0: data sets in $mini_dir: $(cd "$mini_dir" && echo mini_*)"
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "Stage 7: score"
  ground_truth=$exp_dir/ground_truth/decode_$test_set
  [ -f "$ground_truth/decode.json" ] || metis link-decode "$mini_dir/$test_set" "$ground_truth" --task tts
  # shellcheck disable=SC2086
  metis score "$exp_dir"/*/decode_* --nj "$nj" $score_opts
  metis results "$exp_dir"/*/decode_* -o "$exp_dir/RESULTS.md" --title "TTS on the embedded corpus"
  log "Stage 7: results in $exp_dir/RESULTS.md; listen in $ground_truth/scores/report.html"
fi

log "Done: stages $stage..$stop_stage"
