#!/usr/bin/env bash
# Voice conversion (VC): the source's words in the voice of a reference recording. Results in
# egs/vc/exp, data from egs/vc/corpus.conf. Stages 0-4 are shared with the other recipes and run once.
task=vc
# shellcheck source=utils/recipe_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../utils/recipe_lib.sh"

sets=("$train_set" "$dev_set")  # SSL features, tokens and codes of these (fine-tuning makes its inputs from them)

if in_stage 0 data; then stage_data; end_stage; fi
require_sets "${sets[@]}" "$test_set"
if in_stage 1 ssl; then stage_ssl "${sets[@]}"; end_stage; fi
if in_stage 2 tokenize; then stage_tokenize "${sets[@]}"; end_stage; fi
if in_stage 3 codec; then stage_codec "${sets[@]}"; end_stage; fi
if in_stage 4 pretrain; then stage_pretrain "${sets[@]}"; end_stage; fi
if in_stage 5 finetune; then stage_finetune; end_stage; fi
if in_stage 6 decode; then
  require_finetuned
  decode_set "$test_set" "$finetune_dir/decode_$test_set"
  end_stage
fi
if in_stage 7 score; then
  link_references vc "$test_set" src.scp  # the ground truth (the ceiling) and the unprocessed input (the floor)
  score_and_report "$exp_dir"/*/decode_*
fi
log "Done: stages $stage..$stop_stage"
