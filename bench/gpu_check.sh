#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, run the full-size training steps (stage 1, S2A and the
# codec with its discriminators, bf16; stage 1 also with gradient checkpointing), a full-size decode,
# k-means at Metis's size (200k x 1024 points, 8192 clusters: torch on the GPU, and faiss-gpu when it is
# installed) and a w2v-BERT 2.0-sized feature extractor, and print their tables. Random weights and
# synthetic data: it needs no corpus and no download, only this checkout and a CUDA build of PyTorch
# (plus numpy, PyYAML, safetensors, soundfile, rich, transformers).
#
#   bash bench/gpu_check.sh                     # under 10 minutes on one H100/H200 (each part has a time limit)
#   bash bench/gpu_check.sh --out gpu_check     # also keep each part's log in gpu_check/
#   bash bench/gpu_check.sh --device cpu --sizes mini --big-points 20000   # a dry run of the script on a CPU
set -uo pipefail

device=cuda
sizes=full
big_points=200000
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --big-points) big_points=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -z "$out" ] || mkdir -p "$out"
failed=0

part() {  # part <name> <seconds> <command...>: runs one part with a time limit, keeps going after a failure
  local name=$1 limit=$2 start rc
  shift 2
  echo
  echo "=== $name: $*"
  start=$(date +%s)
  if [ -n "$out" ]; then
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  else
    timeout "$limit" "$@" 2>&1
  fi
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $(($(date +%s) - start)) s"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

echo "=== machine"
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda, "| GPU available:", torch.cuda.is_available())'
python3 -c 'import faiss; print("faiss", faiss.__version__, "| GPUs seen by faiss:", faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0)' 2>/dev/null \
  || echo "faiss: not installed (k-means runs on torch)"

# shellcheck disable=SC2086  # $sizes is a list of words
part train 240 python3 "$root/bench/train.py" --device "$device" --sizes $sizes --steps 10 --warmup 3 --no-scaling
# shellcheck disable=SC2086
part train_checkpointing 80 python3 "$root/bench/train.py" --device "$device" --sizes $sizes --models stage1 --steps 5 --warmup 2 \
  --no-scaling --gradient-checkpointing
# shellcheck disable=SC2086
part decode 120 python3 "$root/bench/decode.py" --device "$device" --sizes $sizes --dtypes bf16 fp32 --repeats 5
part tokenizer 110 python3 "$root/bench/tokenizer.py" --device "$device" --skip-small --big-points "$big_points" \
  --big-backends torch faiss --big-iters 5 --w2v-seconds 30 --audio none

echo
echo "=== gpu_check: $failed part(s) failed"
[ "$failed" -eq 0 ]
