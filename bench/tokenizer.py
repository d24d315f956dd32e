"""k-means and tokenization speed on this machine. (Named tokenizer.py: a bench/tokenize.py would shadow
Python's own tokenize module for every script in this folder.)

    python3 bench/tokenizer.py --feats data/mini/ssl/builtin/mini_train --audio data/mini/mini_test
    python3 bench/tokenizer.py --device cuda --skip-small --big-backends torch faiss --big-iters 5   # on a GPU

1. k-means, same points and same initial centroids for every backend (faiss, torch, scikit-learn
   MiniBatchKMeans): seconds per iteration and the final objective (mean squared distance of the
   points to their nearest centroid, computed the same way for all), at two sizes: the embedded corpus's
   features (small) and random 200k x 1024 points with 8192 clusters (Metis's size; --big-points to
   shrink it when memory is short, --skip-big to leave it out).
2. Tokenization throughput in frames per second: the built-in MFCC extractor, and a w2v-BERT 2.0-sized
   model with random weights (600M parameters, run up to layer 17 as Metis does), on --audio (or on
   random audio when that dir does not exist: the speed does not depend on the content).
On a GPU (--device cuda) the torch k-means and the w2v-BERT model run there; faiss uses the GPU when
faiss-gpu is installed (a backend that is not installed is reported, not fatal).
"""

import argparse
import time

import numpy as np

from metis_cli.data.arrays import ArrayStore
from metis_cli.tokenizer.kmeans import learn_kmeans, sample_features


def mean_sq_distance(points: np.ndarray, centroids: np.ndarray, chunk: int = 32768) -> float:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).to(device)
    total = 0.0
    for i in range(0, len(points), chunk):
        total += float(torch.cdist(torch.from_numpy(points[i : i + chunk]).to(device), c).min(1).values.pow(2).sum())
    return total / len(points)


def bench_kmeans(points: np.ndarray, k: int, iters: dict[str, int], label: str) -> None:
    print(f"\nk-means {label}: {len(points)} x {points.shape[1]} points, {k} clusters")
    print(f"{'backend':<10}{'iters':>6}{'s/iter':>10}{'objective':>14}")
    for backend, n in iters.items():
        start = time.time()
        try:
            centroids, _ = learn_kmeans(points, k, iters=n, seed=0, backend=backend)
        except ImportError as e:
            print(f"{backend:<10}  not installed here ({e})", flush=True)
            continue
        per_iter = (time.time() - start) / n
        print(f"{backend:<10}{n:>6}{per_iter:>10.2f}{mean_sq_distance(points, centroids):>14.4f}", flush=True)


def bench_extractors(audio_dir: str, seconds: float, device: str) -> None:
    import os

    import torch
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    from metis_cli.ssl.extractors import MFCCExtractor

    if os.path.isdir(audio_dir):
        from metis_cli.data.datadir import DataDir

        dd = DataDir(audio_dir)
        wavs = [dd.load_audio(u)[0] for u in dd.utt_ids()]
    else:
        print(f"\n{audio_dir} not found: random audio (speed only)")
        wavs = [np.random.default_rng(0).normal(scale=0.1, size=int(seconds * 16000)).astype(np.float32)]
    mfcc = MFCCExtractor()
    start = time.time()
    frames = sum(len(mfcc(w)) for w in wavs)
    elapsed = time.time() - start
    print(f"\ntokenization throughput ({torch.get_num_threads()} threads)")
    print(f"{'extractor':<34}{'frames/s':>10}{'x realtime':>12}")
    print(f"{'builtin MFCC+deltas':<34}{frames / elapsed:>10.0f}{frames / elapsed / 50:>12.1f}", flush=True)

    config = Wav2Vec2BertConfig()  # the w2v-BERT 2.0 shape: 24 layers, 1024 dims, ~600M parameters
    model = Wav2Vec2BertModel(config).eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    model.encoder.layers = model.encoder.layers[:18]  # hidden_states[17]
    wav = np.concatenate(wavs)[: int(seconds * 16000)]
    from transformers import SeamlessM4TFeatureExtractor

    features = SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2, sampling_rate=16000)
    inputs = {k: v.to(device) for k, v in features(wav, sampling_rate=16000, return_tensors="pt").items()}
    for dtype in (torch.float32, torch.bfloat16):
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            model(**inputs, output_hidden_states=True)  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.time()
            out = model(**inputs, output_hidden_states=True).hidden_states[17]
            if device == "cuda":
                torch.cuda.synchronize()
            elapsed = time.time() - start
        name = f"w2v-BERT 2.0 size ({params / 1e6:.0f}M), {str(dtype)[6:]}, {device}"
        print(f"{name:<34}{out.shape[1] / elapsed:>10.0f}{out.shape[1] / elapsed / 50:>12.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feats", default="data/mini/ssl/builtin/mini_train")
    parser.add_argument("--audio", default="data/mini/mini_test")
    parser.add_argument("--small-k", type=int, default=128)
    parser.add_argument("--big-points", type=int, default=200_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument(
        "--big-backends", nargs="+", default=["torch", "faiss", "sklearn"], choices=["torch", "faiss", "sklearn"]
    )
    parser.add_argument(
        "--big-iters",
        type=int,
        default=None,
        help="Iterations per backend on the big set (default: torch 2, others 1).",
    )
    parser.add_argument("--w2v-seconds", type=float, default=10.0)
    parser.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="Where the w2v-BERT model runs (k-means: torch and faiss-gpu take a GPU when there is one).",
    )
    args = parser.parse_args()

    if not args.skip_small:
        small = sample_features(ArrayStore(args.feats), portion=1.0, seed=0)
        bench_kmeans(
            small, args.small_k, {"faiss": 10, "torch": 10, "sklearn": 10}, "small (embedded corpus, builtin features)"
        )
    if not args.skip_big:
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(8192, 1024)).astype(np.float32)
        big = centres[rng.integers(0, 8192, args.big_points)] + rng.normal(
            scale=2.0, size=(args.big_points, 1024)
        ).astype(np.float32)
        iters = {b: args.big_iters or (2 if b == "torch" else 1) for b in args.big_backends}
        bench_kmeans(big, 8192, iters, "big (Metis size)")
    bench_extractors(args.audio, args.w2v_seconds, args.device)


if __name__ == "__main__":
    main()
