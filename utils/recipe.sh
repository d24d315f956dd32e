#!/usr/bin/env bash
# The Metis recipe, shared by egs/{tts,vc,se,tse}/run.sh (which set --task and --exp-dir), on the
# embedded corpus (conf/mini) or your own corpus (conf/full).
#
#   bash egs/tts/run.sh                               # every stage, embedded corpus
#   bash egs/se/run.sh --stage 5                      # SE from fine-tuning on (stages 0-4 done)
#   bash egs/tts/run.sh --stage 0 --stop-stage 0      # only build and validate the corpus
#   bash egs/tts/run.sh --mini-size tiny --nj 2       # the small CI-sized corpus
#
# Stages (a stage runs when stage <= N <= stop_stage; each writes a .done marker after its outputs):
#   0 data      synthesise the embedded corpus + SE/TSE/VC sets (shared by all recipes), validate
#   1 ssl       SSL features of every set (train stats applied to all), shared under <mini-dir>/ssl/
#   2 tokenize  k-means on the train features, SSL tokens of every set (<set>/ssl_tokens), quality report
#   3 codec     train the acoustic codec (shared: <root>/exp/codec_<conf>), encode every set to
#               <set>/acoustic_codes, resynthesise the test set (tts recipe; scored in stage 7 as task resynth)
#   4 pretrain  stage-1 pre-training on the train set's SSL tokens (shared: <root>/exp/pretrain_<conf>),
#               S2A training (shared: <root>/exp/s2a_<conf>; conf/full: two, <...>_coarse + <...>_fine);
#               the tts recipe then hears them: S2A resynthesis of the test set from its ground-truth SSL
#               tokens with a same-speaker prompt (task resynth), and prompted stage-1 generation (generate)
#   5 finetune  fine-tune the pre-trained model for the task: <exp-dir>/<task>_<conf>
#               (conf/<conf>/finetune_<task>.yaml; inputs made on the fly from mini_train)
#   6 decode    decode the task's test set with it: <exp-dir>/<task>_<conf>/decode_<test set>
#   7 score     score every <exp-dir>/*/decode_*, the ground truth (the ceiling) and, for vc/se/tse, the
#               unprocessed input (the floor); write <exp-dir>/RESULTS.md
#
# Paper scale: --ssl-extractor /models/w2v-bert-2.0 --ssl-layer 17 --n-clusters 8192 --kmeans-portion 0.05
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

task=tts                   # tts, vc, se or tse (set by egs/<task>/run.sh)
stage=0
stop_stage=100
nj=2
mini_dir=$root/data/mini   # shared by every recipe: built once, reused
mini_size=default          # default (16 speakers, ~45 min) or tiny (CI: 6 speakers)
seed=0
exp_dir=""                 # default: <root>/egs/<task>/exp
ssl_extractor=builtin      # or a local w2v-BERT 2.0 / HuBERT / WavLM model dir
ssl_layer=17               # hidden_states index, for model dirs only
n_clusters=128             # SSL token vocabulary
kmeans_portion=0.5
ssl_sets="mini_train mini_dev mini_test"
config_dir=$root/conf/mini  # conf/mini (CPU, embedded corpus) or conf/full (published sizes)
codec_overrides=""          # key=value overrides of codec.yaml, e.g. "train.max_steps=100"
codec_dir=""               # default: <root>/exp/codec_<name of config_dir>, shared by all recipes
pretrain_overrides=""      # key=value overrides of pretrain.yaml
pretrain_dir=""            # default: <root>/exp/pretrain_<name of config_dir>, shared by all recipes
s2a_overrides=""           # key=value overrides of the S2A config(s)
s2a_dir=""                 # default: <root>/exp/s2a_<name of config_dir>, shared by all recipes
resynth_opts=""            # extra options for metis resynth, e.g. "--s2a-opt steps=[20,8,1]"
finetune_overrides=""      # key=value overrides of finetune_<task>.yaml, e.g. "adaptation.mode=full"
finetune_dir=""            # default: <exp-dir>/<task>_<name of config_dir>
decode_opts="--bf16"       # extra options for metis decode, e.g. "--stage1-opt steps=10"
test_set=""                # default: mini_test (tts), mini_vc_test, mini_se_test, mini_tse_test
score_opts=""              # extra options for metis score, e.g. "--asr /models/whisper-large-v3"
help_message=$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//')

. "$root/utils/parse_options.sh"
. "$root/utils/log.sh"

command -v metis >/dev/null || die "the metis command is not installed; run: bash tools/install.sh"
case $task in
  tts) default_test=mini_test; input_scp="" ;;
  vc) default_test=mini_vc_test; input_scp=src.scp ;;
  se) default_test=mini_se_test; input_scp=noisy.scp ;;
  tse) default_test=mini_tse_test; input_scp=mix.scp ;;
  *) die "unknown --task $task: choose tts, vc, se or tse" ;;
esac
[ -n "$test_set" ] || test_set=$default_test
[ -n "$exp_dir" ] || exp_dir=$root/egs/$task/exp

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data"
  bash "$root/local/mini/data.sh" --mini-dir "$mini_dir" --mini-size "$mini_size" --seed "$seed" --nj "$nj"
  log "Stage 0: data sets in $mini_dir: $(cd "$mini_dir" && echo mini_*)"
fi

if [ "$ssl_extractor" = builtin ]; then
  ssl_name=builtin
  layer_opt=""
else
  ssl_name=$(basename "$ssl_extractor")_l$ssl_layer
  layer_opt="--layer $ssl_layer"
fi
ssl_dir=$mini_dir/ssl/$ssl_name
kmeans_dir=$mini_dir/kmeans/${ssl_name}_k$n_clusters

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: ssl: $ssl_extractor features in $ssl_dir"
  train_set=${ssl_sets%% *}
  for set in $ssl_sets; do
    [ -f "$ssl_dir/$set/.done" ] && continue
    stats_opt=""
    [ "$set" != "$train_set" ] && stats_opt="--stats $ssl_dir/$train_set/stats.safetensors"
    # shellcheck disable=SC2086
    metis extract-ssl "$mini_dir/$set" "$ssl_dir/$set" --extractor "$ssl_extractor" $layer_opt --nj "$nj" $stats_opt
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: tokenize: k-means ($n_clusters clusters) in $kmeans_dir"
  train_set=${ssl_sets%% *}
  [ -f "$kmeans_dir/kmeans.safetensors" ] ||
    metis kmeans "$ssl_dir/$train_set" "$kmeans_dir" --n-clusters "$n_clusters" --portion "$kmeans_portion"
  for set in $ssl_sets; do
    tokens=$mini_dir/$set/ssl_tokens
    # Tokens made with another k-means model are redone; the marker names the model they came from.
    if [ "$(cat "$tokens/.done" 2>/dev/null)" != "$kmeans_dir" ]; then
      rm -rf "$tokens"
      metis tokenize "$tokens" --kmeans "$kmeans_dir" --feats "$ssl_dir/$set"
      echo "$kmeans_dir" > "$tokens/.done"
    fi
  done
  dev_set=$(echo "$ssl_sets" | cut -d' ' -f2)
  metis token-report "$mini_dir/$dev_set/ssl_tokens" --phones "$mini_dir/$dev_set/phones.ctm" --json "$kmeans_dir/quality_$dev_set.json"
fi

[ -n "$codec_dir" ] || codec_dir=$root/exp/codec_$(basename "$config_dir")

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: codec: $config_dir/codec.yaml in $codec_dir"
  if [ ! -f "$codec_dir/.done" ]; then
    # shellcheck disable=SC2086
    metis codec train "$config_dir/codec.yaml" "$codec_dir" $codec_overrides \
      --train-data "$mini_dir/mini_train" --val-data "$mini_dir/mini_dev"
    touch "$codec_dir/.done"
  fi
  for set in $ssl_sets; do
    codes=$mini_dir/$set/acoustic_codes
    if [ "$(cat "$codes/.done" 2>/dev/null)" != "$codec_dir" ]; then
      rm -rf "$codes"
      metis codec encode "$codec_dir" "$mini_dir/$set" --nj "$nj"
      echo "$codec_dir" > "$codes/.done"
    fi
  done
  resynth=$exp_dir/codec_resynth/decode_$test_set
  if [ "$task" = tts ] && [ ! -f "$resynth/decode.json" ]; then
    metis codec decode "$codec_dir" "$mini_dir/$test_set/acoustic_codes" "$resynth" --data "$mini_dir/$test_set"
  fi
fi

conf_name=$(basename "$config_dir")
[ -n "$pretrain_dir" ] || pretrain_dir=$root/exp/pretrain_$conf_name
[ -n "$s2a_dir" ] || s2a_dir=$root/exp/s2a_$conf_name

# train <kind> <config> <exp dir> <what its data came from> <overrides>: trains once; an experiment made
# from other tokens or codes is not silently reused nor deleted.
train() {
  local kind=$1 config=$2 dir=$3 inputs=$4 overrides=$5
  if [ -f "$dir/.done" ]; then
    [ "$(cat "$dir/.done")" = "$inputs" ] ||
      die "$dir was trained on $(cat "$dir/.done"), not $inputs; move it away or pass another --${kind}-dir"
    return 0
  fi
  # shellcheck disable=SC2086
  metis "$( [ "$kind" = pretrain ] && echo pretrain || echo train-s2a )" "$config" "$dir" $overrides \
    --train-data "$mini_dir/mini_train" --val-data "$mini_dir/mini_dev"
  echo "$inputs" > "$dir/.done"
}

s2a_opts=""
if [ -f "$config_dir/s2a.yaml" ]; then  # one S2A model for every codebook
  s2a_dirs=$s2a_dir
else  # the reference's split: codebook 0, then codebooks 1..
  s2a_dirs="${s2a_dir}_coarse ${s2a_dir}_fine"
fi
for d in $s2a_dirs; do s2a_opts="$s2a_opts --s2a $d"; done

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  sets="mini_train mini_dev"
  [ "$task" = tts ] && sets="$sets $test_set"
  for set in $sets; do
    [ -f "$mini_dir/$set/ssl_tokens/.done" ] || die "$mini_dir/$set/ssl_tokens is missing: run stage 2 first"
    [ -f "$mini_dir/$set/acoustic_codes/.done" ] || die "$mini_dir/$set/acoustic_codes is missing: run stage 3 first"
  done
  log "Stage 4: pretrain: $config_dir/pretrain.yaml in $pretrain_dir"
  train pretrain "$config_dir/pretrain.yaml" "$pretrain_dir" "$kmeans_dir" "$pretrain_overrides"
  inputs="$kmeans_dir $codec_dir"
  if [ -f "$config_dir/s2a.yaml" ]; then
    log "Stage 4: S2A: $config_dir/s2a.yaml in $s2a_dir"
    train s2a "$config_dir/s2a.yaml" "$s2a_dir" "$inputs" "$s2a_overrides"
  else
    for part in coarse fine; do
      log "Stage 4: S2A: $config_dir/s2a_$part.yaml in ${s2a_dir}_$part"
      train s2a "$config_dir/s2a_$part.yaml" "${s2a_dir}_$part" "$inputs" "$s2a_overrides"
    done
  fi
  resynth=$exp_dir/s2a_resynth/decode_$test_set
  if [ "$task" = tts ] && [ ! -f "$resynth/decode.json" ]; then
    # shellcheck disable=SC2086
    metis resynth "$mini_dir/$test_set" "$resynth" $s2a_opts --codec "$codec_dir" $resynth_opts
  fi
  generate=$exp_dir/pretrain_generate/decode_$test_set
  if [ "$task" = tts ] && [ ! -f "$generate/decode.json" ]; then
    # shellcheck disable=SC2086
    metis resynth "$mini_dir/$test_set" "$generate" $s2a_opts --codec "$codec_dir" --stage1 "$pretrain_dir" $resynth_opts
  fi
fi

[ -n "$finetune_dir" ] || finetune_dir=$exp_dir/${task}_$conf_name

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  [ -f "$pretrain_dir/.done" ] || die "$pretrain_dir is not trained: run stage 4 first"
  log "Stage 5: finetune: $config_dir/finetune_$task.yaml in $finetune_dir"
  if [ -f "$finetune_dir/.done" ]; then
    [ "$(cat "$finetune_dir/.done")" = "$pretrain_dir" ] ||
      die "$finetune_dir was fine-tuned from $(cat "$finetune_dir/.done"), not $pretrain_dir; move it away or pass --finetune-dir"
  else
    # shellcheck disable=SC2086
    metis finetune "$config_dir/finetune_$task.yaml" "$finetune_dir" $finetune_overrides --task "$task" \
      --init "$pretrain_dir" --train-data "$mini_dir/mini_train" --val-data "$mini_dir/mini_dev"
    echo "$pretrain_dir" > "$finetune_dir/.done"
  fi
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  [ -f "$finetune_dir/.done" ] || die "$finetune_dir is not fine-tuned: run stage 5 first"
  decode=$finetune_dir/decode_$test_set
  log "Stage 6: decode: $mini_dir/$test_set into $decode"
  # shellcheck disable=SC2086
  if [ ! -f "$decode/decode.json" ] &&
    ! metis decode "$mini_dir/$test_set" --task "$task" --model "$finetune_dir" $s2a_opts --codec "$codec_dir" \
      --out "$decode" $decode_opts; then
    # Utterances with bad inputs are skipped (and scored as missing); nothing decoded at all is fatal.
    [ -f "$decode/decode.json" ] || die "decoding $test_set failed; see $decode/log/decode.log"
    log "WARNING: $(wc -l < "$decode/failed") utterance(s) of $test_set could not be decoded: see $decode/failed"
  fi
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "Stage 7: score"
  ground_truth=$exp_dir/ground_truth/decode_$test_set
  [ -f "$ground_truth/decode.json" ] || metis link-decode "$mini_dir/$test_set" "$ground_truth" --task "$task"
  if [ -n "$input_scp" ]; then
    input=$exp_dir/input/decode_$test_set
    [ -f "$input/decode.json" ] || metis link-decode "$mini_dir/$test_set" "$input" --task "$task" --scp "$input_scp"
  fi
  # shellcheck disable=SC2086
  metis score "$exp_dir"/*/decode_* --nj "$nj" $score_opts
  metis results "$exp_dir"/*/decode_* -o "$exp_dir/RESULTS.md" --title "$task on the embedded corpus"
  log "Stage 7: results in $exp_dir/RESULTS.md; listen in $ground_truth/scores/report.html"
fi

log "Done: stages $stage..$stop_stage"
