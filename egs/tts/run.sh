#!/usr/bin/env bash
# Zero-shot TTS: the text spoken in the voice of a 3 s prompt. Results in egs/tts/exp, data from
# egs/tts/corpus.conf. Stages 0-4 are shared with the other recipes and run once; this recipe also hears
# the codec, S2A and the pre-trained model alone on the test set (codec_resynth, s2a_resynth,
# pretrain_generate).
task=tts
# Fine-tuning reads the transcripts of the pre-training set (--pretrain-data; mini: the large embedded corpus,
# 4,975 utterances against the train set's 659): WER 73.7% against 90.4% (docs/tts_text_mini.md).
# --finetune-data DIR fine-tunes on another set, e.g. --finetune-data data/mini/mini_train.
finetune_on_pretrain_data=true
# shellcheck source=utils/recipe_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../utils/recipe_lib.sh"

sets=("$train_set" "$dev_set" "$test_set")  # SSL features, tokens and codes of these (the test set: heard below)

if in_stage 0 data; then stage_data; end_stage; fi
require_sets "${sets[@]}"
if in_stage 1 ssl; then stage_ssl "${sets[@]}"; end_stage; fi
if in_stage 2 tokenize; then stage_tokenize "${sets[@]}"; end_stage; fi
if in_stage 3 codec; then
  stage_codec "${sets[@]}"
  codec_resynth "$test_set"  # the ceiling: the test set through the codec
  end_stage
fi
if in_stage 4 pretrain; then
  stage_pretrain "${sets[@]}"
  resynth "$test_set" s2a_resynth  # S2A from the ground-truth SSL tokens, a same-speaker prompt
  resynth "$test_set" pretrain_generate --stage1 "$pretrain_dir"  # the pre-trained model continues a prompt
  end_stage
fi
if in_stage 5 finetune; then stage_finetune; end_stage; fi
if in_stage 6 decode; then
  require_finetuned
  decode_set "$test_set" "$finetune_dir/decode_$test_set"
  end_stage
fi
if in_stage 7 score; then
  link_references tts "$test_set" ""  # the ground truth; TTS has no unprocessed input
  score_and_report "$exp_dir"/*/decode_*
fi
log "Done: stages $stage..$stop_stage"
