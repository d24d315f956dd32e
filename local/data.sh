#!/usr/bin/env bash
# Stage 0 of every recipe: prepares the data sets once, validates them, then writes <data-dir>/.done.
#
#   bash local/data.sh --corpus mini --data-dir data/mini --mini-size default   # the embedded corpus
#   bash local/data.sh --corpus libritts --corpus-dir /corpora/LibriTTS --data-dir data/libritts
#
# --corpus mini synthesises the embedded corpus (metis data make-mini: mini_train, mini_dev, mini_test,
# mini_{se,tse,vc}_{dev,test}); --videos true also renders the mouth videos of train, dev and test
# (lip-to-speech; added to a corpus built without them, as egs/l2s's stage 0 does). Any other corpus is read
# from --corpus-dir in its published layout by metis data prepare (librispeech, libritts, vctk, dns, libri2mix,
# lrs3: train, dev, test); --prepare-opts passes it more options, e.g. "--train-parts train-clean-100 --seed 1"
# (see metis data prepare --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

corpus=mini
corpus_dir=""
data_dir=$root/data/mini
mini_size=default
prepare_opts=""
seed=0
nj=2
videos=false
help_message=$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//')

. "$root/utils/parse_options.sh"
. "$root/utils/log.sh"

case $videos in true | false) ;; *) die "--videos is true or false, not '$videos'" ;; esac
[ "$corpus" = mini ] || videos=false  # a prepared corpus lists its own videos
if [ -f "$data_dir/.done" ] && { [ "$videos" = false ] || [ -f "$data_dir/mini_train/video.scp" ]; }; then
  log "$data_dir already built and validated, skipping"
  exit 0
fi
if [ "$corpus" = mini ]; then
  video_opt=--no-videos
  [ "$videos" = true ] && video_opt=--videos
  log "synthesising the embedded corpus ($mini_size, seed $seed, $video_opt) into $data_dir"
  metis data make-mini "$data_dir" --size "$mini_size" --seed "$seed" --nj "$nj" "$video_opt"
  sets=("$data_dir"/mini_*)
else
  [ -n "$corpus_dir" ] || die "--corpus $corpus needs --corpus-dir (your copy of the corpus), e.g. in the recipe's corpus.conf"
  log "preparing $corpus from $corpus_dir into $data_dir"
  # shellcheck disable=SC2086
  metis data prepare "$corpus" "$corpus_dir" "$data_dir" --seed "$seed" $prepare_opts
  sets=("$data_dir"/train "$data_dir"/dev "$data_dir"/test)
fi
metis data validate "${sets[@]}" --json "$data_dir/validate.json"
touch "$data_dir/.done"
