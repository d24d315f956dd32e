# shellcheck shell=bash disable=SC2034  # the options are read by egs/<task>/run.sh
# The shared part of every recipe, sourced by egs/<task>/run.sh after it sets $task. It reads the options
# (egs/<task>/corpus.conf first, the command line over it), checks them, and defines the shared stages 0-4
# (stage_data, stage_ssl, stage_tokenize, stage_codec, stage_pretrain) and the helpers of each recipe's own
# stages (stage_finetune, decode_set, link_references, score_and_report). No task is named in this file:
# what differs between tasks is written in egs/<task>/run.sh.
#
#   bash egs/tts/run.sh                               # every stage, embedded corpus
#   bash egs/se/run.sh --stage 5                      # SE from fine-tuning on (stages 0-4 done)
#   bash egs/tts/run.sh --stage 0 --stop-stage 0      # only build and validate the corpus
#   bash egs/tts/run.sh --mini-size tiny --nj 2       # the small CI-sized corpus
#   bash egs/tts/run.sh --config-dir conf/full --ngpu 8 --corpus libritts --corpus-dir /corpora/LibriTTS \
#     --data-dir data/libritts --train-set train --dev-set dev --test-set test \
#     --ssl-extractor /models/w2v-bert-2.0 --n-clusters 8192 --kmeans-portion 0.05   # paper scale
#
# Stages (a stage runs when stage <= N <= stop_stage; each writes a .done marker after its outputs, naming what
# they were made from, so a rerun skips finished work, makes again what an input made again has outdated (features,
# k-means, tokens, decodes) or stops at a model trained on the old inputs, and a killed stage resumes; times go to
# <exp-dir>/stage_times.tsv):
#   0 data      build the corpus once (local/data.sh: embedded, or metis data prepare), validate every set
#   1 ssl       (--ssl-extractor phonetic: train the phonetic front end on --phonetic-data, by default the
#               pre-training set; shared: <root>/exp/phonetic_<conf>[_<corpus>], mini: exp/phonetic_mini_large)
#               SSL features of the recipe's sets (train, dev; tts and l2s: the test set too), train stats
#               applied to all: <data-dir>/ssl/
#   2 tokenize  the SSL tokenizer on the train features (k-means, or with --tokenizer vq a learned VQ),
#               SSL tokens of every set (<set>/ssl_tokens), quality report
#   3 codec     train the acoustic codec on --codec-data (default: the pre-training set; shared:
#               <root>/exp/codec_<conf>), encode every set to <set>/acoustic_codes (tts, l2s: and
#               resynthesise the test set, the ceiling)
#   4 pretrain  stage-1 pre-training on the SSL tokens of --pretrain-data (shared: <root>/exp/pretrain_<conf>;
#               mini: the large embedded corpus, built in stage 0, its features and tokens in stages 1-2),
#               S2A training (shared: <root>/exp/s2a_<conf>; conf/full: two, <...>_coarse + <...>_fine)
#               (tts: and S2A resynthesis of the test set, and prompted stage-1 generation)
#   5 finetune  fine-tune the pre-trained model for the task: <exp-dir>/<task>_<conf>
#               (egs/<task>/conf/<conf>/finetune.yaml; inputs made on the fly from --finetune-data)
#   6 decode    decode the task's test set(s) with it: <exp-dir>/<task>_<conf>/decode_<set> (see run.sh)
#   7 score     score every decode dir, the ground truth (the ceiling) and the unprocessed input (the floor)
#               where the task has one; write <exp-dir>/RESULTS.md with the commands and stage times
#
# Options (--name value or --name=value; --stop-stage and --stop_stage are the same):
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${task:?egs/<task>/run.sh sets task before it sources utils/recipe_lib.sh}"
recipe_task=$task

stage=0
stop_stage=100
nj=2                       # parallel jobs of the data, feature, encoding and scoring stages
ngpu=0                     # 0: CPU; 1: one GPU; N > 1: trainers run under torchrun with N processes
corpus=mini                # mini (the embedded corpus) or librispeech, libritts, vctk, dns, libri2mix, lrs3
corpus_dir=""              # your copy of the corpus (not for mini)
data_dir=$root/data/mini   # the prepared data sets, shared by every recipe on this corpus
mini_size=default          # corpus=mini: default (16 speakers, ~45 min), large (+24 training speakers, ~5 h; no L2S) or tiny (CI)
prepare_opts=""            # more options for metis data prepare, e.g. "--train-parts train-clean-100"
train_set=mini_train       # sets in <data-dir> (egs/<task>/corpus.conf names them)
dev_set=mini_dev
test_set=mini_test
seed=0
exp_dir=""                 # default: <root>/egs/<task>/exp
ssl_extractor=phonetic     # phonetic (stage 1 trains it on phones.ctm: docs/phonetic_ssl.md), builtin (MFCC) or a local w2v-BERT 2.0 / HuBERT / WavLM dir
ssl_layer=17               # hidden_states index, for model dirs only
phonetic_overrides=""      # key=value overrides of phonetic.yaml, e.g. "train.max_steps=200"
phonetic_data=""           # the set with phone timings (phones.ctm) the phonetic front end learns from; default: --pretrain-data (mini: the large corpus, 36 speakers)
phonetic_dir=""            # default: <root>/exp/phonetic_<name of config_dir>[_<corpus of --phonetic-data, when not --data-dir>], shared by all recipes
tokenizer=kmeans           # kmeans (metis kmeans) or vq (metis train-vq with <config-dir>/vq.yaml)
n_clusters=512             # SSL token vocabulary: k-means clusters or VQ codes (docs/phonetic_ssl.md; builtin MFCC: 1024, docs/world_codec.md)
kmeans_portion=0.5
vq_overrides=""            # key=value overrides of vq.yaml, e.g. "train.max_steps=100"
tokenizer_dir=""           # default: <data-dir>/kmeans/<ssl>_k<n> (vq: <data-dir>/vq/<ssl>_k<n>/tokenizer); another corpus's, to reuse its tokens
config_dir=$root/conf/mini  # conf/mini (CPU, embedded corpus) or conf/full (published sizes)
codec_config=codec.yaml    # in <config-dir>: codec.yaml (mini: the parametric WORLD codec; full: the neural one) or codec_neural.yaml
codec_overrides=""          # key=value overrides of the codec config, e.g. "data.max_utterances=100"
codec_data=""              # the set the codec learns from; default: --pretrain-data (mini: the large corpus, 36 speakers)
codec_dir=""               # default: <root>/exp/codec_<name of config_dir> (codec_<name>_neural for codec_neural.yaml), shared by all recipes
pretrain_data=""           # the data set stage-1 pre-training reads (unlabelled speech); default: <data-dir>_large/<train-set> for the default-size embedded corpus (the large one, ~5 h, made in stage 0: docs/tts_text_mini.md), else <data-dir>/<train-set>
pretrain_overrides=""      # key=value overrides of pretrain.yaml
pretrain_dir=""            # default: <root>/exp/pretrain_<name of config_dir>, shared by all recipes
s2a_config=""              # in <config-dir>; default: s2a_vector.yaml with the WORLD codec (mini: regresses its vector), else s2a.yaml (one model predicting codes), else s2a_coarse.yaml + s2a_fine.yaml (full)
s2a_overrides=""           # key=value overrides of the S2A config(s)
s2a_dir=""                 # default: <root>/exp/s2a_<name of config_dir>[_vector], shared by all recipes
resynth_opts=""            # extra options for metis resynth, e.g. "--s2a-opt steps=[20,8,1]"
finetune_config=""         # default: egs/<task>/conf/<name of config_dir>/finetune.yaml (the recipe's own)
finetune_data=""           # the set fine-tuning trains on; default: <data-dir>/<train-set> (egs/tts: --pretrain-data, for its transcripts)
finetune_overrides=""      # key=value overrides of the fine-tuning config, e.g. "adaptation.mode=full"
finetune_dir=""            # default: <exp-dir>/<task>_<name of config_dir>
decode_opts=""             # extra options for metis decode, e.g. "--stage1-opt steps=10" (bf16: where native)
score_opts=""              # extra options for metis score, e.g. "--asr /models/whisper-large-v3"
help_message=$(sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  echo
  sed -n '/^#   bash egs/,/^# Options/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  sed -n '/^stage=0/,/^score_opts=/p' "${BASH_SOURCE[0]}" | sed -E ':a; s/^([a-z0-9-]+)_([a-z0-9_]*=)/\1-\2/; ta; s/^([a-z0-9-]+)=/  --\1 /')
invocation="bash egs/$task/run.sh$([ $# -eq 0 ] || printf ' %q' "$@")"  # the command line, for RESULTS.md

set -- --config "$root/egs/$task/corpus.conf" "$@"
. "$root/utils/parse_options.sh"
. "$root/utils/log.sh"

[ "$task" = "$recipe_task" ] || die "--task $task: egs/$recipe_task/run.sh runs $recipe_task; run egs/$task/run.sh"
last_stage=7
[[ $stage =~ ^[0-9]+$ ]] && [ "$stage" -le $last_stage ] || die "--stage '$stage': give a stage number in 0..$last_stage (see --help)"
[[ $stop_stage =~ ^[0-9]+$ ]] || die "--stop-stage '$stop_stage': give a stage number in $stage..$last_stage (see --help)"
[ "$stop_stage" -ge "$stage" ] || die "--stop-stage $stop_stage is before --stage $stage: nothing would run; give a stop stage in $stage..$last_stage"
[[ $nj =~ ^[1-9][0-9]*$ ]] || die "--nj '$nj': give a number of parallel jobs, 1 or more"
command -v metis >/dev/null || die "the metis command is not installed; run: bash tools/install.sh"
case $tokenizer in
  kmeans|vq) ;;
  *) die "unknown --tokenizer $tokenizer: choose kmeans or vq" ;;
esac
[ -n "$exp_dir" ] || exp_dir=$root/egs/$task/exp
case $ngpu in
  0) export CUDA_VISIBLE_DEVICES="" ;;  # CPU only, even on a GPU machine
  [1-9]|[1-9][0-9]) ;;
  *) die "--ngpu must be a number of GPUs (0 for the CPU), got '$ngpu'" ;;
esac
# Trainers run under torchrun (DDP, one process per GPU) when there are several GPUs.
trainer=(metis)
[ "$ngpu" -gt 1 ] && trainer=(torchrun --standalone --nproc_per_node "$ngpu" -m metis_cli)

# in_stage N NAME: true when stage N is within --stage..--stop-stage ([ $stage -le N ] && [ $stop_stage -ge N ]);
# logs it and starts its clock. end_stage: appends "<stage> <name> <seconds> <finished at> <command>" to
# <exp-dir>/stage_times.tsv.
in_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  stage_id=$1 stage_name=$2 stage_start=$(date +%s)
  log "Stage $1: $2"
}
end_stage() {
  mkdir -p "$exp_dir"
  printf '%s\t%s\t%s\t%s\t%s\n' "$stage_id" "$stage_name" "$(($(date +%s) - stage_start))" "$(date '+%F %T')" \
    "$invocation" >> "$exp_dir/stage_times.tsv"
}

# require_sets SET...: every set exists (stage 0 made it), unless only stage 0 runs.
require_sets() {
  local set
  for set in "$@"; do
    [ -d "$data_dir/$set" ] || [ "$stop_stage" -lt 1 ] || die "$data_dir/$set does not exist: run stage 0 first (or check --data-dir, --*-set)"
  done
}

conf_name=$(basename "$config_dir")
codec_variant=$(basename "${codec_config%.yaml}")  # tuning/codec_neural_5600.yaml -> _neural_5600
codec_variant=${codec_variant#codec}
[ -n "$codec_dir" ] || codec_dir=$root/exp/codec_$conf_name$codec_variant
[ -n "$pretrain_dir" ] || pretrain_dir=$root/exp/pretrain_$conf_name
if [ -z "$pretrain_data" ]; then  # the embedded corpus pre-trains on its large size: the default's 33 min over-fit
  pretrain_data=$data_dir/$train_set
  [ "$corpus" = mini ] && [ "$mini_size" = default ] && pretrain_data=${data_dir%/}_large/$train_set
fi
pretrain_data=${pretrain_data%/}
[ -n "$codec_data" ] || codec_data=$pretrain_data  # more voices than the train set: the codebooks fit unseen ones better
codec_data=${codec_data%/}
case $ssl_extractor in
  builtin) ssl_name=builtin layer_opt="" ssl_model=builtin ;;
  phonetic)  # the phonetic front end, trained once in stage 1 on --phonetic-data and shared: <root>/exp/phonetic_<conf>[_<corpus>]
    [ -n "$phonetic_data" ] || phonetic_data=$pretrain_data
    phonetic_data=${phonetic_data%/}
    if [ -z "$phonetic_dir" ]; then  # learnt from another corpus than --data-dir's: named after it (data/mini_large: phonetic_mini_large)
      phonetic_dir=$root/exp/phonetic_$conf_name
      phonetic_corpus=$(dirname "$phonetic_data")
      corpus_name=$(basename "$phonetic_corpus") data_name=$(basename "$data_dir")
      [ "$phonetic_corpus" = "${data_dir%/}" ] || phonetic_dir=${phonetic_dir}_${corpus_name#"${data_name}_"}
    fi
    ssl_name=$(basename "$phonetic_dir") layer_opt="" ssl_model=$phonetic_dir/model ;;
  *) ssl_name=$(basename "$ssl_extractor")_l$ssl_layer layer_opt="--layer $ssl_layer" ssl_model=$ssl_extractor ;;
esac
ssl_dir=$data_dir/ssl/$ssl_name
own_tokenizer=false  # the recipe learns the tokenizer (and learns it again when its features change)
if [ -z "$tokenizer_dir" ]; then
  own_tokenizer=true
  case $tokenizer in
    kmeans) tokenizer_dir=$data_dir/kmeans/${ssl_name}_k$n_clusters ;;
    vq) tokenizer_dir=$data_dir/vq/${ssl_name}_k$n_clusters/tokenizer ;;  # metis train-vq writes <exp>/tokenizer
  esac
fi
tokenizer_file=$tokenizer_dir/$tokenizer.safetensors  # kmeans.safetensors or vq.safetensors

# the pre-training set's SSL features (normalised with the train set's statistics) and its corpus root
pretrain_corpus=$(dirname "$pretrain_data")
pretrain_ssl=$pretrain_corpus/ssl/$ssl_name/$(basename "$pretrain_data")
if [ -z "$s2a_config" ]; then
  if [ -z "$codec_variant" ] && [ -f "$config_dir/s2a_vector.yaml" ]; then
    s2a_config=s2a_vector.yaml  # the WORLD codec (mini): S2A regresses its vector
  elif [ -f "$config_dir/s2a.yaml" ]; then
    s2a_config=s2a.yaml
  fi
fi
[ -z "$s2a_config" ] || [ -f "$config_dir/$s2a_config" ] || die "--s2a-config $s2a_config: no such file in $config_dir"
s2a_variant=$(basename "${s2a_config%.yaml}")  # s2a_vector.yaml -> _vector
s2a_variant=${s2a_variant#s2a}
[ -n "$s2a_dir" ] || s2a_dir=$root/exp/s2a_$conf_name$s2a_variant
[ -n "$finetune_dir" ] || finetune_dir=$exp_dir/${task}_$conf_name
[ -n "$finetune_config" ] || finetune_config=$root/egs/$task/conf/$conf_name/finetune.yaml
if [ -z "$finetune_data" ]; then  # a recipe that sets finetune_on_pretrain_data=true reads the pre-training set
  finetune_data=$data_dir/$train_set
  [ "${finetune_on_pretrain_data:-false}" = true ] && finetune_data=$pretrain_data
fi
finetune_data=${finetune_data%/}

s2a_opts=""
if [ -n "$s2a_config" ]; then  # one S2A model for every codebook
  s2a_dirs=$s2a_dir
  s2a_configs=$s2a_config
else  # the reference's split: codebook 0, then codebooks 1..
  s2a_dirs="${s2a_dir}_coarse ${s2a_dir}_fine"
  s2a_configs="s2a_coarse.yaml s2a_fine.yaml"  # in $config_dir, one for each of $s2a_dirs
fi
for d in $s2a_dirs; do s2a_opts="$s2a_opts --s2a $d"; done

# made_from DIR INPUTS VERB OPTION [OLD]: true when DIR is finished (its .done marker) and was made from INPUTS,
# false when it is not finished; a marker reading OLD (written before the markers named all the inputs) stands
# for INPUTS. A dir made from anything else stops the recipe, naming both: it is neither reused nor deleted.
made_from() {
  local dir=$1 inputs=$2 verb=$3 option=$4 old=${5:-} marker
  [ -f "$dir/.done" ] || return 1
  marker=$(cat "$dir/.done")
  [ "$marker" = "$inputs" ] || { [ -n "$old" ] && [ "$marker" = "$old" ]; } ||
    die "$dir was $verb $marker, not $inputs; move it away or pass another $option"
}

# configured_as DIR CONFIG ARGS...: a warning when the finished model in DIR was trained with another config than
# `metis ARGS... --check-config` (ARGS: the trainer's command line, less its data) resolves now (CONFIG edited,
# other overrides): the model is kept as it is, so what the recipe decodes is that model; moving DIR away retrains it.
configured_as() {
  local dir=$1 config=$2 differences
  shift 2
  differences=$(metis "$@" --check-config 2>/dev/null) || return 0
  [ -z "$differences" ] ||
    log "WARNING: $dir is kept as trained, with another config than $config now gives (${differences//$'\n'/; }); to retrain it, move it away"
}

# made_after DIR INPUT VERB OPTION: stops the recipe when the model INPUT was made again after DIR was made from it
# (their .done markers): DIR is neither reused nor deleted.
made_after() {
  [ ! "$2/.done" -nt "$1/.done" ] || die "$1 was $3 before $2 was trained again; move it away or pass another $4"
}

# weights_of DIR: a short hash of the weights in DIR (its *.safetensors): what a marker records of a model the
# recipe made, so that one made again in the same place (a retrained front end, a relearnt k-means) is told apart
# and what was made from the old one is made again (features, tokens) or refused (the models trained on them).
weights_of() {
  [ -d "$1" ] || { echo none; return 0; }
  find "$1" -maxdepth 1 -name '*.safetensors' -print0 | sort -z | xargs -0 -r cat | sha256sum | cut -c1-12
}

# adopt_legacy MARKER INPUT: true when MARKER (written before markers named what they were made from) is not
# older than INPUT, the file it was made from: it then stands for the current INPUT.
adopt_legacy() {
  [ -f "$1" ] && [ ! "$2" -nt "$1" ]
}

# train <kind> <config> <exp dir> <what its data came from> <overrides> [<training data>] [<old marker>]: trains
# once (on <data-dir>/<train-set> unless given); an experiment made from other data, tokens or codes is not
# silently reused nor deleted.
train() {
  local kind=$1 config=$2 dir=$3 inputs=$4 overrides=$5 train_data=${6:-$data_dir/$train_set} old=${7:-}
  local command args
  case $kind in codec) command=(codec train) ;; s2a) command=(train-s2a) ;; *) command=("$kind") ;; esac
  # shellcheck disable=SC2206  # the overrides and options split into words, as before
  args=("${command[@]}" "$config" "$dir" $overrides)  # the trainer's command line, less its data
  if made_from "$dir" "$inputs" "trained on" "--${kind}-dir" "$old"; then
    configured_as "$dir" "$config" "${args[@]}"
    return 0
  fi
  "${trainer[@]}" "${args[@]}" --train-data "$train_data" --val-data "$data_dir/$dev_set"
  echo "$inputs" > "$dir/.done"
}

# --- the shared stages ---------------------------------------------------------------------------

stage_data() {
  # the embedded corpus's mouth videos are rendered for the recipes that set mouth_videos=true (egs/l2s)
  bash "$root/local/data.sh" --corpus "$corpus" --corpus-dir "$corpus_dir" --data-dir "$data_dir" \
    --mini-size "$mini_size" --prepare-opts "$prepare_opts" --seed "$seed" --nj "$nj" --videos "${mouth_videos:-false}"
  if [ "$corpus" = mini ] && [ "$pretrain_data" = "${data_dir%/}_large/$train_set" ]; then
    # the large embedded corpus holds the default's utterances: hard links (or nothing) save their synthesis
    mkdir -p "$pretrain_corpus/wav"
    cp -aln "$data_dir"/wav/spk* "$pretrain_corpus/wav/" 2>/dev/null || true
    bash "$root/local/data.sh" --corpus mini --data-dir "$pretrain_corpus" --mini-size large --seed "$seed" --nj "$nj"
  fi
}

# stage_phonetic: the phonetic front end, learnt once from --phonetic-data (its .done marker names that set; a
# front end trained before the marker existed learnt from the train set). One made from other data is not
# silently reused: the features, tokens and models after it would follow the wrong front end.
stage_phonetic() {
  local dev_opt=() args
  # shellcheck disable=SC2206  # the overrides and options split into words, as before
  args=(train-phonetic "$phonetic_data" "$phonetic_dir" $phonetic_overrides --config "$config_dir/phonetic.yaml")
  if [ -f "$ssl_model/phonetic.json" ] && [ ! -f "$phonetic_dir/.done" ]; then
    echo "$data_dir/$train_set" > "$phonetic_dir/.done"  # trained before the marker existed: on the train set
  fi
  if made_from "$phonetic_dir" "$phonetic_data" "trained on" "--phonetic-dir (or --phonetic-data)"; then
    configured_as "$phonetic_dir" "$config_dir/phonetic.yaml" "${args[@]}"
    return 0
  fi
  [ -f "$config_dir/phonetic.yaml" ] ||
    die "--ssl-extractor phonetic: $config_dir has no phonetic.yaml; give a w2v-BERT 2.0 dir (--ssl-extractor /models/w2v-bert-2.0) or builtin"
  require_data_set --phonetic-data "$phonetic_data"
  [ -f "$phonetic_data/phones.ctm" ] ||
    die "--ssl-extractor phonetic learns from phone timings and $phonetic_data has no phones.ctm; give --ssl-extractor builtin or a w2v-BERT 2.0 dir"
  log "phonetic front end: $config_dir/phonetic.yaml on $phonetic_data in $phonetic_dir"
  [ -f "$data_dir/$dev_set/phones.ctm" ] && dev_opt=(--dev "$data_dir/$dev_set")
  "${trainer[@]}" "${args[@]}" "${dev_opt[@]}"
  echo "$phonetic_data" > "$phonetic_dir/.done"
}

# stage_ssl SET...: SSL features of the sets (the train set first: its stats normalise the others). Each
# feature dir's .made_from names the extractor (the phonetic front end: with a hash of its weights); features made
# with another are extracted again.
stage_ssl() {
  local set
  ssl_id=$ssl_model${layer_opt:+ $layer_opt}
  if [ "$ssl_extractor" = phonetic ]; then
    stage_phonetic
    ssl_id="$ssl_model@$(weights_of "$ssl_model")"
  fi
  log "$ssl_extractor features in $ssl_dir"
  for set in "$@"; do
    extract_set "$data_dir/$set" "$ssl_dir/$set"
  done
  require_pretrain_data
  extract_set "$pretrain_data" "$pretrain_ssl"  # when --pretrain-data is the train set, extracted above
}

# extract_set DATA FEATS: the SSL features of DATA into FEATS (once for the extractor $ssl_id), normalised with
# the train set's statistics (the train set's own are computed on it).
extract_set() {
  local stats_opt="" made
  made=$(cat "$2/.made_from" 2>/dev/null || true)
  if [ -z "$made" ] && [ -f "$2/.done" ]; then  # extracted before the marker existed: by this extractor unless older
    if [ "$ssl_extractor" != phonetic ] || adopt_legacy "$2/.done" "$ssl_model/phonetic.safetensors"; then
      made=$ssl_id
      echo "$made" > "$2/.made_from"
    else
      made="an earlier $ssl_model"
    fi
  fi
  if [ -n "$made" ] && [ "$made" != "$ssl_id" ]; then
    log "$2 was extracted with $made, not $ssl_id: extracting it again"
    rm -rf "$2"
  elif [ -f "$2/.done" ]; then
    return 0
  fi
  [ "$2" != "$ssl_dir/$train_set" ] && stats_opt="--stats $ssl_dir/$train_set/stats.safetensors"
  mkdir -p "$2"
  echo "$ssl_id" > "$2/.made_from"  # before extracting: a killed run resumes only with the same extractor
  # shellcheck disable=SC2086
  metis extract-ssl "$1" "$2" --extractor "$ssl_model" $layer_opt --nj "$nj" $stats_opt
}

# require_data_set OPTION DIR: the set an option names exists (stage 0 builds the large embedded corpus that the
# mini recipes' --pretrain-data, --phonetic-data and --codec-data default to).
require_data_set() {
  [ -d "$2" ] ||
    die "$1 $2 does not exist: run stage 0 first (it builds the large embedded corpus), or give another set, e.g. $1 $data_dir/$train_set"
}

# require_pretrain_data: --pretrain-data exists.
require_pretrain_data() {
  require_data_set --pretrain-data "$pretrain_data"
}

# stage_tokenize SET...: the SSL tokenizer (k-means or VQ) on the train features, the tokens of the sets. The
# recipe's own tokenizer (no --tokenizer-dir) records the features it learnt from in .made_from: k-means is learnt
# again from new features, a VQ tokenizer made from others stops the recipe. Tokens name their tokenizer with a
# hash of its weights, and are made again by another.
stage_tokenize() {
  local set feats_id
  for set in "$@"; do
    [ -f "$ssl_dir/$set/.done" ] || die "$ssl_dir/$set is missing: run stage 1 first"
  done
  feats_id=$(cat "$ssl_dir/$train_set/.made_from" 2>/dev/null || echo "$ssl_model")
  [ "$tokenizer" = kmeans ] && feats_id="$feats_id portion $kmeans_portion"
  [ "$own_tokenizer" = false ] || tokenizer_learnt_from "$feats_id"
  if [ "$tokenizer" = kmeans ]; then
    log "k-means ($n_clusters clusters) in $tokenizer_dir"
    [ -f "$tokenizer_file" ] ||
      metis kmeans "$ssl_dir/$train_set" "$tokenizer_dir" --n-clusters "$n_clusters" --portion "$kmeans_portion"
  elif [ ! -f "$tokenizer_file" ]; then
    [ "$(basename "$tokenizer_dir")" = tokenizer ] ||
      die "--tokenizer-dir $tokenizer_dir holds no VQ tokenizer; one to train must be <exp>/tokenizer (metis train-vq writes it there)"
    log "VQ tokenizer ($n_clusters codes): $config_dir/vq.yaml in $(dirname "$tokenizer_dir")"
    # shellcheck disable=SC2086
    "${trainer[@]}" train-vq "$ssl_dir/$train_set" "$(dirname "$tokenizer_dir")" --config "$config_dir/vq.yaml" \
      --val-feats "$ssl_dir/$dev_set" model.codebook_size="$n_clusters" $vq_overrides
  fi
  [ "$own_tokenizer" = false ] || echo "$feats_id" > "$tokenizer_dir/.made_from"
  tokenizer_id=$(tokenizer_id)
  for set in "$@"; do
    tokenize_set "$data_dir/$set" "$ssl_dir/$set"
  done
  # the pre-training set's tokens (when it is the train set, tokenized above and skipped here)
  [ -f "$pretrain_ssl/.done" ] ||
    die "$pretrain_ssl is missing: run stage 1 first (it extracts the pre-training set, --pretrain-data $pretrain_data)"
  tokenize_set "$pretrain_data" "$pretrain_ssl"
  if [ -f "$data_dir/$dev_set/phones.ctm" ]; then  # phone alignments: the embedded corpus has them
    metis token-report "$data_dir/$dev_set/ssl_tokens" --phones "$data_dir/$dev_set/phones.ctm" --json "$tokenizer_dir/quality_$dev_set.json"
  fi
}

# tokenizer_learnt_from FEATS_ID: the recipe's tokenizer, when it was learnt from other features than FEATS_ID
# (what the train features were made with), is learnt again (k-means) or stops the recipe (VQ). One learnt before
# the marker existed stands for the features when it is not older than they are.
tokenizer_learnt_from() {
  local made
  [ -f "$tokenizer_file" ] || return 0
  made=$(cat "$tokenizer_dir/.made_from" 2>/dev/null || true)
  if [ -z "$made" ]; then
    made="features older than it"
    adopt_legacy "$tokenizer_file" "$ssl_dir/$train_set/.done" && made=$1
  fi
  [ "$made" = "$1" ] && return 0
  [ "$tokenizer" = kmeans ] ||
    die "$(dirname "$tokenizer_dir") was trained on $made, not $1; move it away or pass another --tokenizer-dir"
  log "$tokenizer_dir was learnt from $made, not $1: learning it again"
  rm -f "$tokenizer_file" "$tokenizer_dir/.made_from"
}

# tokenizer_id: the tokenizer dir and a hash of its weights, what the tokens and the models trained on them record.
tokenizer_id() {
  printf '%s@%s\n' "$tokenizer_dir" "$(weights_of "$tokenizer_dir")"
}

# tokenize_set DATA FEATS: DATA/ssl_tokens from the features FEATS. Tokens made with another tokenizer are
# redone; the marker names the tokenizer they came from ($tokenizer_id; before it did, the tokenizer dir alone,
# which stands for it when the tokens are not older than its weights).
tokenize_set() {
  local tokens=$1/ssl_tokens made
  made=$(cat "$tokens/.done" 2>/dev/null || true)
  [ "$made" = "$tokenizer_dir" ] && adopt_legacy "$tokens/.done" "$tokenizer_file" && made=$tokenizer_id &&
    echo "$made" > "$tokens/.done"
  if [ "$made" != "$tokenizer_id" ]; then
    rm -rf "$tokens"
    metis tokenize "$tokens" --model "$tokenizer_dir" --tokenizer "$tokenizer" --feats "$2"
    echo "$tokenizer_id" > "$tokens/.done"
  fi
}

# stage_codec SET...: the acoustic codec (trained once, shared), the codes of the sets.
stage_codec() {
  local set codes
  [ -f "$config_dir/$codec_config" ] || die "--codec-config $codec_config: no such file in $config_dir"
  log "$config_dir/$codec_config in $codec_dir"
  require_data_set --codec-data "$codec_data"
  train codec "$config_dir/$codec_config" "$codec_dir" "$codec_data" "$codec_overrides" "$codec_data"
  for set in "$@"; do
    codes=$data_dir/$set/acoustic_codes  # made again by another codec, or by this one trained again since
    if [ "$(cat "$codes/.done" 2>/dev/null)" != "$codec_dir" ] || [ "$codec_dir/.done" -nt "$codes/.done" ]; then
      rm -rf "$codes"
      metis codec encode "$codec_dir" "$data_dir/$set" --nj "$nj"
      echo "$codec_dir" > "$codes/.done"
    fi
  done
}

# stage_pretrain SET...: stage-1 pre-training and S2A (each trained once, shared); the sets' tokens and codes
# must be there.
stage_pretrain() {
  local set dir configs
  require_pretrain_data
  for set in "$@"; do
    [ -f "$data_dir/$set/ssl_tokens/.done" ] || die "$data_dir/$set/ssl_tokens is missing: run stage 2 first"
    [ -f "$data_dir/$set/acoustic_codes/.done" ] || die "$data_dir/$set/acoustic_codes is missing: run stage 3 first"
  done
  [ -f "$pretrain_data/ssl_tokens/.done" ] || die "$pretrain_data/ssl_tokens is missing: run stage 2 first"
  tokenizer_id=$(tokenizer_id)
  log "$config_dir/pretrain.yaml on $pretrain_data in $pretrain_dir"
  train pretrain "$config_dir/pretrain.yaml" "$pretrain_dir" "$tokenizer_id $pretrain_data" "$pretrain_overrides" \
    "$pretrain_data" "$(legacy_marker "$pretrain_dir" "$tokenizer_dir $pretrain_data")"
  read -r -a configs <<< "$s2a_configs"
  for dir in $s2a_dirs; do
    log "S2A: $config_dir/${configs[0]} in $dir"
    train s2a "$config_dir/${configs[0]}" "$dir" "$tokenizer_id $codec_dir" "$s2a_overrides" "" \
      "$(legacy_marker "$dir" "$tokenizer_dir $codec_dir")"
    made_after "$dir" "$codec_dir" "trained on its codes" --s2a-dir
    configs=("${configs[@]:1}")
  done
}

# legacy_marker DIR OLD: OLD, the marker a model trained on the tokens wrote before markers named the tokenizer's
# weights, when DIR's marker is not older than those weights (it stands for them then); nothing otherwise.
legacy_marker() {
  adopt_legacy "$1/.done" "$tokenizer_file" && echo "$2"
  return 0
}

# --- helpers of each recipe's own stages -------------------------------------------------------

# codec_resynth SET: the set resynthesised by the codec from its codes (the ceiling of what S2A can reach).
codec_resynth() {
  local out=$exp_dir/codec_resynth/decode_$1
  decoded "$out" "$codec_dir" || metis codec decode "$codec_dir" "$data_dir/$1/acoustic_codes" "$out" --data "$data_dir/$1"
}

# decoded OUT MODEL_DIR...: true when OUT holds a finished decode made after every model it was made with (their
# .done markers); one made before a model was trained again is removed, to be decoded again.
decoded() {
  local out=$1 model
  shift
  [ -f "$out/decode.json" ] || return 1
  for model in "$@"; do
    if [ "$model/.done" -nt "$out/decode.json" ]; then
      log "$out was decoded before $model was made again: decoding it again"
      rm -rf "$out"
      return 1
    fi
  done
}

# resynth SET NAME [metis resynth options]: S2A (and with --stage1, the pre-trained model) heard on SET.
resynth() {
  local set=$1 out=$exp_dir/$2/decode_$1 arg previous="" models
  shift 2
  read -r -a models <<< "$s2a_dirs $codec_dir"
  for arg in "$@"; do  # --stage1 DIR: the stage-1 model generates the tokens
    [ "$previous" = --stage1 ] && models+=("$arg")
    previous=$arg
  done
  decoded "$out" "${models[@]}" && return 0
  # shellcheck disable=SC2086
  metis resynth "$data_dir/$set" "$out" $s2a_opts --codec "$codec_dir" "$@" $resynth_opts
}

# stage_finetune: the task model (--finetune-config, egs/<task>/conf/<conf>/finetune.yaml) from the pre-trained one, once.
stage_finetune() {
  [ -f "$pretrain_dir/.done" ] || die "$pretrain_dir is not trained: run stage 4 first"
  [ -f "$finetune_config" ] ||
    die "no fine-tuning config $finetune_config: write one for --config-dir $conf_name or pass --finetune-config FILE"
  [ -d "$finetune_data" ] ||
    die "--finetune-data $finetune_data does not exist: run stage 0 first, or give another set, e.g. --finetune-data $data_dir/$train_set"
  log "$finetune_config on $finetune_data in $finetune_dir"
  local inputs="$pretrain_dir $finetune_data" old="" args  # inputs: what the model was made from, in its .done marker
  # shellcheck disable=SC2206  # the overrides and options split into words, as before
  args=(finetune "$finetune_config" "$finetune_dir" $finetune_overrides --task "$task" --init "$pretrain_dir" $s2a_opts \
    --codec "$codec_dir")
  # a marker from before --finetune-data names the pre-trained model only: the train set
  [ "$finetune_data" = "$data_dir/$train_set" ] && old=$pretrain_dir
  if made_from "$finetune_dir" "$inputs" "fine-tuned from" --finetune-dir "$old"; then
    made_after "$finetune_dir" "$pretrain_dir" "fine-tuned" --finetune-dir
    configured_as "$finetune_dir" "$finetune_config" "${args[@]}"
    return 0
  fi
  "${trainer[@]}" "${args[@]}" --train-data "$finetune_data" --val-data "$data_dir/$dev_set"
  echo "$inputs" > "$finetune_dir/.done"
}

# require_finetuned: stage 6 needs stage 5's model.
require_finetuned() {
  [ -f "$finetune_dir/.done" ] || die "$finetune_dir is not fine-tuned: run stage 5 first"
}

# decode_set <set> <decode dir> [metis decode options]: decodes once; utterances with bad inputs are
# skipped (and scored as missing), nothing decoded at all is fatal.
decode_set() {
  local set=$1 decode=$2 models
  shift 2
  read -r -a models <<< "$finetune_dir $s2a_dirs $codec_dir"
  decoded "$decode" "${models[@]}" && return 0
  log "$data_dir/$set into $decode"
  local jobs=1  # one decoding process per GPU (--ngpu), on GPU when there is one (metis decode --device auto)
  [ "$ngpu" -gt 1 ] && jobs=$ngpu
  # shellcheck disable=SC2086
  if ! metis decode "$data_dir/$set" --task "$task" --model "$finetune_dir" $s2a_opts --codec "$codec_dir" \
    --out "$decode" --nj "$jobs" "$@" $decode_opts; then
    [ -f "$decode/decode.json" ] || die "decoding $set failed; see $decode/log/decode.log"
    log "WARNING: $(wc -l < "$decode/failed") utterance(s) of $set could not be decoded: see $decode/failed"
  fi
}

# link_references <task> <set> <input scp or ""> : the ground truth (ceiling) and the unprocessed input (floor)
link_references() {
  local ground_truth=$exp_dir/ground_truth/decode_$2 input=$exp_dir/input/decode_$2
  [ -f "$ground_truth/decode.json" ] || metis link-decode "$data_dir/$2" "$ground_truth" --task "$1"
  [ -z "$3" ] || [ -f "$input/decode.json" ] || metis link-decode "$data_dir/$2" "$input" --task "$1" --scp "$3"
}

# floor_scp_of TASK: the scp of the unprocessed input a task's output is scored against (the floor), or
# nothing (the task registry: metis tasks TASK).
floor_scp_of() {
  metis tasks "$1" --field floor_scp
}

# score_and_report DECODE_DIR...: scores them (each once; a rerun adds what is new) and writes
# <exp-dir>/RESULTS.md with the commands and stage times.
score_and_report() {
  # shellcheck disable=SC2086
  metis score "$@" --nj "$nj" --compare "$exp_dir/compare.html" $score_opts
  end_stage
  metis results "$@" -o "$exp_dir/RESULTS.md" --title "$task: $corpus corpus, $conf_name configs" \
    --stage-times "$exp_dir/stage_times.tsv"
  log "results in $exp_dir/RESULTS.md; compare and listen in $exp_dir/compare.html"
}
