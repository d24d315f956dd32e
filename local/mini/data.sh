#!/usr/bin/env bash
# Builds and validates the embedded corpus once; every recipe's stage 0 calls this.
#
#   bash local/mini/data.sh --mini-dir data/mini --mini-size default --seed 0 --nj 2
#
# Writes <mini-dir>/.done only after every set has passed `metis data validate`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

mini_dir=$root/data/mini
mini_size=default
seed=0
nj=2
help_message=$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//')

. "$root/utils/parse_options.sh"
. "$root/utils/log.sh"

if [ -f "$mini_dir/.done" ]; then
  log "$mini_dir already built and validated, skipping"
  exit 0
fi
log "synthesising the embedded corpus ($mini_size, seed $seed) into $mini_dir"
metis data make-mini "$mini_dir" --size "$mini_size" --seed "$seed" --nj "$nj"
metis data validate "$mini_dir"/mini_* --json "$mini_dir/validate.json"
touch "$mini_dir/.done"
