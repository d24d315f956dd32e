"""k-means over SSL features: the SSL tokenizer of this toolkit (HuBERT-style units).

Backends:
- ``torch``: chunked Lloyd iterations (``x @ C.T`` distances, ``index_add_`` updates), on the GPU when
  there is one. The CPU default: measured here it is the fastest (23 s per iteration on 200k x 1024
  points, 8192 clusters, vs 140 s for faiss's default build).
- ``faiss``: faiss.Kmeans, the default when faiss-gpu is installed and sees a GPU.
- ``sklearn``: MiniBatchKMeans, for comparison in bench/tokenizer.py.
All start from the same seeded random sample of points as centroids; an emptied cluster is re-seeded
from a random point. Saved as ``kmeans.safetensors`` (``centroids`` [K, D]) + ``kmeans.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from metis_cli.data.arrays import ArrayStore
from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "faiss", "sklearn")


class FeatureDimensionError(MetisError):
    """Features whose dimension differs from the k-means model's: every utterance would fail alike."""


def sample_features(store: ArrayStore, portion: float, seed: int, max_frames: int | None = None) -> np.ndarray:
    """A seeded random ``portion`` of the frames of every utterance, as float32 [N, D]."""
    if not 0 < portion <= 1:
        raise MetisError(f"--portion must be in (0, 1], got {portion}")
    rng = np.random.default_rng(seed)
    parts = []
    for utt in store.keys():
        feats = store[utt]
        keep = rng.random(len(feats)) < portion
        parts.append(np.asarray(feats[keep], dtype=np.float32))
    if not parts:
        raise MetisError(f"{store.dir}: no features")
    points = np.concatenate(parts)
    if max_frames is not None and len(points) > max_frames:
        points = points[rng.choice(len(points), max_frames, replace=False)]
    return points


def _initial(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    return points[np.random.default_rng(seed).choice(len(points), k, replace=False)].copy()


def _kmeans_torch(
    points: np.ndarray, k: int, iters: int, seed: int, chunk: int = 2048
) -> tuple[np.ndarray, list[float]]:
    # chunk: points per distance block. 2048 x 1024 distances stay in cache: the WORLD codec's 16 codebooks of 1024
    # were learned in 85 s against 157 s with 65536-point blocks, with the same centroids (2 AVX2 cores).
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(points).to(device)
    centroids = torch.from_numpy(_initial(points, k, seed)).to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    objective = []
    x_sq = (x * x).sum(1)
    for _ in range(iters):
        sums = torch.zeros_like(centroids)
        counts = torch.zeros(k, device=device, dtype=torch.float32)
        total = 0.0
        c_sq = (centroids * centroids).sum(1)
        for start in range(0, len(x), chunk):
            block = x[start : start + chunk]
            dist = x_sq[start : start + chunk, None] - 2 * block @ centroids.T + c_sq[None, :]
            best, labels = dist.min(1)
            total += float(best.clamp_min(0).sum())
            sums.index_add_(0, labels, block)
            counts.index_add_(0, labels, torch.ones_like(best))
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            picks = torch.randint(0, len(x), (int(empty.sum()),), generator=generator).to(device)
            centroids[empty] = x[picks]
        objective.append(total)
    return centroids.cpu().numpy(), objective


def _kmeans_faiss(points: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, list[float]]:
    import faiss

    use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(
        points.shape[1],
        k,
        niter=iters,
        seed=seed,
        gpu=use_gpu,
        verbose=False,
        max_points_per_centroid=max(256, len(points) // k + 1),
    )
    km.train(np.ascontiguousarray(points), init_centroids=_initial(points, k, seed))
    return np.asarray(km.centroids), [float(o) for o in km.obj]


def _kmeans_sklearn(points: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, list[float]]:
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(
        n_clusters=k,
        init=_initial(points, k, seed),
        n_init=1,
        max_iter=iters,
        batch_size=10 * k,
        random_state=seed,
        compute_labels=False,
    )
    km.fit(points)
    return km.cluster_centers_.astype(np.float32), [float(km.inertia_ or 0.0)]


def default_backend() -> str:
    """faiss where faiss-gpu sees a GPU; otherwise torch (which runs on a GPU too when there is one)."""
    try:
        import faiss
    except ImportError:
        return "torch"
    return "faiss" if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 else "torch"


def learn_kmeans(
    points: np.ndarray, n_clusters: int, iters: int = 20, seed: int = 0, backend: str = "auto"
) -> tuple[np.ndarray, list[float]]:
    """Centroids [K, D] and the objective (sum of squared distances) after each iteration."""
    if backend not in BACKENDS:
        raise MetisError(f"unknown k-means backend '{backend}'; choose from {', '.join(BACKENDS)}")
    if len(points) < n_clusters:
        raise MetisError(
            f"{len(points)} feature frames cannot make {n_clusters} clusters; use a larger --portion or fewer clusters"
        )
    backend = default_backend() if backend == "auto" else backend
    run = {"torch": _kmeans_torch, "faiss": _kmeans_faiss, "sklearn": _kmeans_sklearn}[backend]
    return run(np.ascontiguousarray(points, dtype=np.float32), n_clusters, iters, seed)


def train_kmeans(
    feats_dir,
    out_dir,
    n_clusters: int,
    portion: float = 0.1,
    iters: int = 20,
    seed: int = 0,
    backend: str = "auto",
    max_frames: int | None = None,
) -> dict:
    """Learns centroids from a portion of a feature store and saves them with their config."""
    from safetensors.numpy import save_file

    store = ArrayStore(feats_dir)
    started = time.time()
    points = sample_features(store, portion, seed, max_frames)
    chosen = default_backend() if backend == "auto" else backend
    logger.info(
        "k-means: %d points x %d dims, %d clusters, %d iterations, backend %s",
        len(points),
        points.shape[1],
        n_clusters,
        iters,
        chosen,
    )
    centroids, objective = learn_kmeans(points, n_clusters, iters, seed, chosen)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"centroids": centroids.astype(np.float32)}, str(out / "kmeans.safetensors"))
    ssl_config = (
        json.loads((Path(feats_dir) / "ssl.json").read_text()) if (Path(feats_dir) / "ssl.json").is_file() else {}
    )
    config = {
        "n_clusters": n_clusters,
        "dim": int(points.shape[1]),
        "backend": chosen,
        "iters": iters,
        "seed": seed,
        "portion": portion,
        "points": int(len(points)),
        "objective": objective,
        "features": str(Path(feats_dir).resolve()),
        "ssl": ssl_config,
        "seconds": round(time.time() - started, 2),
    }
    (out / "kmeans.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


class KMeansModel:
    """Saved centroids; ``assign`` gives the nearest centroid of each frame."""

    kind = "kmeans"  # the key of TOKENIZER_FILES

    def __init__(self, model_dir):
        from safetensors.numpy import load_file

        self.dir = Path(model_dir)
        path = self.dir / "kmeans.safetensors"
        if not path.is_file():
            raise MetisError(f"{path}: not found; train one with `metis kmeans`")
        self.centroids = load_file(str(path))["centroids"].astype(np.float32)
        self.config = json.loads((self.dir / "kmeans.json").read_text()) if (self.dir / "kmeans.json").is_file() else {}
        self.c_sq = (self.centroids**2).sum(1)

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)

    def assign(self, features: np.ndarray, utt: str | None = None) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.centroids.shape[1]:
            where = f"utterance '{utt}': " if utt else ""
            raise FeatureDimensionError(
                f"{where}features of shape {features.shape} do not match the k-means model {self.dir} "
                f"({self.centroids.shape[1]} dims)"
            )
        dist = (features**2).sum(1)[:, None] - 2 * features @ self.centroids.T + self.c_sq[None, :]
        dtype = np.int16 if self.n_clusters <= 32767 else np.int32
        return dist.argmin(1).astype(dtype)
