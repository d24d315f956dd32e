#!/usr/bin/env bash
# Metis-Omni: one model for TTS, VC, SE and TSE (egs/omni/conf/<conf>/finetune.yaml), decoded on each task's
# test set (--omni-test-sets, from egs/omni/corpus.conf) and on text-guided TSE, a combination it never
# trained on; scored beside the single-task models of egs/{tts,vc,se,tse} when those recipes have run
# (--compare-exp-dir, TASK standing for each task). Results in egs/omni/exp. Stages 0-4 are shared with the
# other recipes and run once.
task=omni
omni_test_sets=""                  # <task>:<set> pairs decoded in stage 6, e.g. "tts:mini_test se:mini_se_test"
compare_exp_dir=""                 # the single-task recipes' exp dirs (TASK: each task); default egs/TASK/exp
# shellcheck source=utils/recipe_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../utils/recipe_lib.sh"
[ -n "$compare_exp_dir" ] || compare_exp_dir=$root/egs/TASK/exp

[ -n "$omni_test_sets" ] || die "the omni recipe needs --omni-test-sets (egs/omni/corpus.conf sets them)"
test_sets=""
for pair in $omni_test_sets; do
  [[ $pair =~ ^(tts|vc|se|tse):[^:]+$ ]] || die "--omni-test-sets: '$pair' is not <tts|vc|se|tse>:<set>"
  test_sets="$test_sets ${pair#*:}"
done
sets=("$train_set" "$dev_set")  # SSL features, tokens and codes of these (fine-tuning makes its inputs from them)

if in_stage 0 data; then stage_data; end_stage; fi
# shellcheck disable=SC2086
require_sets "${sets[@]}" $test_sets
if in_stage 1 ssl; then stage_ssl "${sets[@]}"; end_stage; fi
if in_stage 2 tokenize; then stage_tokenize "${sets[@]}"; end_stage; fi
if in_stage 3 codec; then stage_codec "${sets[@]}"; end_stage; fi
if in_stage 4 pretrain; then stage_pretrain "${sets[@]}"; end_stage; fi
if in_stage 5 finetune; then stage_finetune; end_stage; fi
if in_stage 6 decode; then
  require_finetuned
  for pair in $omni_test_sets; do
    mode=${pair%%:*} set=${pair#*:}
    decode_set "$set" "$finetune_dir/decode_${mode}_$set" --mode "$mode"
    # Text-guided TSE, a combination Omni never trained on: the target's words as the prefix too.
    [ "$mode" = tse ] && decode_set "$set" "$finetune_dir/decode_tse_text_$set" --mode tse --text-guided
  done
  end_stage
fi
if in_stage 7 score; then
  scored=()
  for pair in $omni_test_sets; do
    mode=${pair%%:*} set=${pair#*:}
    scp=$(floor_scp_of "$mode")
    scored+=("$finetune_dir"/decode_*_"$set")
    # The single-task recipe's decode of this set and its references, when it has run (already scored: one
    # scoring of each reference); otherwise references of our own.
    single=${compare_exp_dir//TASK/$mode}
    if [ -f "$single/ground_truth/decode_$set/decode.json" ]; then
      scored+=("$single/ground_truth/decode_$set")
      [ -z "$scp" ] || [ ! -f "$single/input/decode_$set/decode.json" ] || scored+=("$single/input/decode_$set")
    else
      link_references "$mode" "$set" "$scp"
      scored+=("$exp_dir/ground_truth/decode_$set")
      [ -z "$scp" ] || scored+=("$exp_dir/input/decode_$set")
    fi
    [ -f "$single/${mode}_$conf_name/decode_$set/decode.json" ] && scored+=("$single/${mode}_$conf_name/decode_$set")
  done
  score_and_report "${scored[@]}"
fi
log "Done: stages $stage..$stop_stage"
