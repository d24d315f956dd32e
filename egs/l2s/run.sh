#!/usr/bin/env bash
# Lip-to-speech (L2S): speech from a mouth video, in the voice of a prompt. Results in egs/l2s/exp, data
# from egs/l2s/corpus.conf. Stages 0-4 are shared with the other recipes and run once; the model is also
# decoded with the video frames shuffled in time (<model>_shuffled_video: the floor, it must be far worse).
task=l2s
mouth_videos=true  # stage 0 renders the embedded corpus's mouth videos (only this recipe needs them)
# shellcheck source=utils/recipe_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../utils/recipe_lib.sh"

sets=("$train_set" "$dev_set" "$test_set")  # SSL features, tokens and codes of these (the test set: heard below)

# Fine-tuning and decoding read mouth videos; the embedded corpus's large size renders none.
needs_videos=false
[ "$stage" -le 6 ] && [ "$stop_stage" -ge 5 ] && needs_videos=true
if [ "$corpus" = mini ] && [ "$mini_size" = large ]; then
  $needs_videos && die "--mini-size large has no mouth videos: lip-to-speech needs --mini-size default or tiny (or --stop-stage 4)"
  mouth_videos=false
fi

if in_stage 0 data; then stage_data; end_stage; fi
require_sets "${sets[@]}"
for set in "${sets[@]}"; do
  if $needs_videos && [ -d "$data_dir/$set" ] && [ ! -f "$data_dir/$set/video.scp" ] && [ ! -f "$data_dir/$set/feats.scp" ]; then
    die "$data_dir/$set has no video.scp (nor visual feats.scp): lip-to-speech needs mouth videos; stage 0 of this recipe renders the embedded corpus's (bash egs/l2s/run.sh --stage 0 --stop-stage 0)"
  fi
done
if in_stage 1 ssl; then stage_ssl "${sets[@]}"; end_stage; fi
if in_stage 2 tokenize; then stage_tokenize "${sets[@]}"; end_stage; fi
if in_stage 3 codec; then
  stage_codec "${sets[@]}"
  codec_resynth "$test_set"  # the ceiling: the test set through the codec
  end_stage
fi
if in_stage 4 pretrain; then stage_pretrain "${sets[@]}"; end_stage; fi
if in_stage 5 finetune; then stage_finetune; end_stage; fi
if in_stage 6 decode; then
  require_finetuned
  decode_set "$test_set" "$finetune_dir/decode_$test_set"
  decode_set "$test_set" "$exp_dir/$(basename "$finetune_dir")_shuffled_video/decode_$test_set" --shuffle-video
  end_stage
fi
if in_stage 7 score; then
  link_references l2s "$test_set" ""  # the ground truth; the floor is the shuffled-video decode
  score_and_report "$exp_dir"/*/decode_*
fi
log "Done: stages $stage..$stop_stage"
