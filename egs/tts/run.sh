#!/usr/bin/env bash
# Zero-shot TTS recipe on the embedded corpus (conf/mini) or your own corpus (conf/full).
#
#   bash egs/tts/run.sh                               # every stage that exists, embedded corpus
#   bash egs/tts/run.sh --stage 0 --stop-stage 0      # only build and validate the corpus
#   bash egs/tts/run.sh --mini-size tiny --nj 2       # the small CI-sized corpus
#
# Stages (a stage runs when stage <= N <= stop_stage; each writes a .done marker after its outputs):
#   0 data      synthesise the embedded corpus + SE/TSE/VC sets (shared by all recipes), validate
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

stage=0
stop_stage=100
nj=2
mini_dir=$root/data/mini   # shared by every recipe: built once, reused
mini_size=default          # default (16 speakers, ~45 min) or tiny (CI: 6 speakers)
seed=0
help_message=$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//')

. "$root/utils/parse_options.sh"
. "$root/utils/log.sh"

command -v metis >/dev/null || die "the metis command is not installed; run: bash tools/install.sh"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data"
  bash "$root/local/mini/data.sh" --mini-dir "$mini_dir" --mini-size "$mini_size" --seed "$seed" --nj "$nj"
  log "Stage 0: data sets in $mini_dir: $(cd "$mini_dir" && echo mini_*)"
fi

log "Done: stages $stage..$stop_stage"
