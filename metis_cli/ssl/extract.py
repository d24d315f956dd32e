"""Stage 1: normalised SSL features for every utterance of a data dir.

Output folder::

    ssl.json                 extractor, layer, dimension, data dir, stats file
    stats.safetensors        per-dimension ``mean`` and ``var`` (computed on a subset, or given)
    part-<j>.bin/.idx        shard j of the features (see metis_cli.data.arrays), float16
    failed                   utterances that could not be processed, with the reason
    log/extract.<j>.log      per shard: one line per utterance
    .done                    written when every utterance is stored or listed in ``failed``

A killed run continues where each shard stopped.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from metis_cli.data.arrays import ArrayStore, ShardedWriter, write_meta
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)
SAMPLE_RATE = 16000

_worker = {}


def _init_worker(spec: str, layer: int | None, chunk_seconds: float, threads: int | None) -> None:
    from metis_cli.ssl.extractors import load_extractor

    if threads:
        import torch

        torch.set_num_threads(threads)
    _worker["extractor"] = load_extractor(spec, layer, chunk_seconds=chunk_seconds)


def _features(job: tuple[str, str, float, float | None]) -> tuple[str, np.ndarray | None, str]:
    """(utt, raw features or None, error). Runs in a worker that holds the extractor."""
    from metis_cli.audio import load_audio

    utt, source, start, end = job
    try:
        wav, _ = load_audio(source, SAMPLE_RATE, start=start, end=end, utt_id=utt, commands=True)
        return utt, _worker["extractor"](wav), ""
    except MetisError as exc:
        return utt, None, str(exc)


def save_stats(path: Path, mean: np.ndarray, var: np.ndarray) -> None:
    from safetensors.numpy import save_file

    save_file({"mean": mean.astype(np.float32), "var": var.astype(np.float32)}, str(path))


def load_stats(path) -> tuple[np.ndarray, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise MetisError(f"{path}: normalisation stats not found")
    try:
        tensors = load_file(str(path))
        return tensors["mean"], tensors["var"]
    except Exception as exc:
        raise MetisError(f"{path}: not a stats file with 'mean' and 'var' ({exc})") from None


def normalize(features: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Mean/variance normalised features as the published model computes them, ``(x - mean) / sqrt(var)`` in
    float32 with no epsilon (a dimension of zero variance, which would divide by zero, is only centred), then
    rounded to float16 as they are stored (so tokens assigned on the fly from audio equal tokens assigned from
    the stored features)."""
    mean, var = np.asarray(mean, dtype=np.float32), np.asarray(var, dtype=np.float32)
    std = np.sqrt(var)
    std = np.where(std > 0, std, np.float32(1.0))
    return ((np.asarray(features, dtype=np.float32) - mean) / std).astype(np.float16)


def _pool(spec, layer, chunk_seconds, num_jobs):
    threads = 1 if num_jobs > 1 else None
    if num_jobs <= 1:
        _init_worker(spec, layer, chunk_seconds, threads)
        return None
    return ProcessPoolExecutor(num_jobs, initializer=_init_worker, initargs=(spec, layer, chunk_seconds, threads))


def _map(pool, jobs):
    if pool is None:
        return map(_features, jobs)
    return pool.map(_features, jobs, chunksize=4)


def extract_ssl(
    data_dir,
    out_dir,
    extractor: str = "builtin",
    layer: int | None = None,
    num_jobs: int = 1,
    stats: str | None = None,
    stats_utts: int = 200,
    seed: int = 0,
    chunk_seconds: float = 30.0,
) -> dict:
    """Extracts (or finishes extracting) features of ``data_dir`` into ``out_dir``; returns a summary."""
    from metis_cli.log import progress

    data, out = DataDir(data_dir), Path(out_dir)
    sources = data.audio_sources()
    utts = sorted(sources)
    config = {"extractor": extractor, "layer": layer, "data_dir": str(data.path.resolve()), "frame_rate": 50}
    config_file = out / "ssl.json"
    if config_file.is_file():
        previous = json.loads(config_file.read_text())
        if {k: previous.get(k) for k in config} != config:
            raise MetisError(
                f"{out} holds features made with {json.dumps({k: previous.get(k) for k in config})}; asked for "
                f"{json.dumps(config)}"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "log").mkdir(exist_ok=True)
    started = time.time()
    pool = _pool(extractor, layer, chunk_seconds, num_jobs)
    try:
        stats_file = out / "stats.safetensors"
        if stats is not None:
            mean, var = load_stats(stats)
            save_stats(stats_file, mean, var)
        elif stats_file.is_file():
            mean, var = load_stats(stats_file)
        else:
            subset = sorted(np.random.default_rng(seed).permutation(len(utts))[: min(stats_utts, len(utts))])
            total, total_sq, count = None, None, 0
            for _utt, feats, _error in _map(pool, [(utts[i], *sources[utts[i]]) for i in subset]):
                if feats is None:
                    continue
                f = feats.astype(np.float64)
                total = f.sum(0) if total is None else total + f.sum(0)
                total_sq = (f**2).sum(0) if total_sq is None else total_sq + (f**2).sum(0)
                count += len(f)
            if count == 0:
                raise MetisError(f"{data.path}: no utterance of the stats subset could be processed")
            mean = total / count
            var = np.maximum(total_sq / count - mean**2, 1e-8)
            save_stats(stats_file, mean, var)
            # Apply what was saved (float32), exactly as a resumed run or a later tokenizer will.
            mean, var = load_stats(stats_file)
            logger.info("normalisation stats from %d frames of %d utterances", count, len(subset))
        dim = int(mean.shape[0])
        config_file.write_text(json.dumps({**config, "dim": dim, "stats": str(stats_file.resolve())}, indent=2) + "\n")

        writer = ShardedWriter(out, utts, num_jobs)
        logs = [open(out / "log" / f"extract.{j + 1}.log", "a") for j in range(len(writer.writers))]
        failed_file = out / "failed"
        failed = (
            dict(line.split("\t", 1) for line in failed_file.read_text().splitlines()) if failed_file.is_file() else {}
        )
        todo = [u for u in utts if u not in writer.done and u not in failed]
        logger.info("%d of %d utterances to extract (%s)", len(todo), len(utts), extractor)
        try:
            with progress() as bar:
                task = bar.add_task(f"extract-ssl {data.path.name}", total=len(todo))
                for utt, feats, error in _map(pool, [(u, *sources[u]) for u in todo]):
                    j = writer.shard_of[utt]
                    if feats is None:
                        failed[utt] = error
                        with open(failed_file, "a") as f:
                            f.write(f"{utt}\t{error}\n")
                        logs[j].write(f"{utt}\tFAILED\t{error}\n")
                        logger.warning("skipped %s", error)
                    else:
                        if feats.shape[1] != dim:
                            raise MetisError(f"utterance '{utt}': features have {feats.shape[1]} dims, the stats {dim}")
                        writer.write(utt, normalize(feats, mean, var))
                        logs[j].write(f"{utt}\t{len(feats)} frames\n")
                    logs[j].flush()
                    bar.advance(task)
        finally:
            writer.close()
            for f in logs:
                f.close()
    finally:
        if pool is not None:
            pool.shutdown()
    write_meta(out, kind="ssl_features", dim=dim, frame_rate=50, extractor=extractor, layer=layer)
    (out / ".done").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    store = ArrayStore(out)
    frames = sum(e.shape[0] for e in store.entries.values())
    return {
        "utterances": len(store),
        "failed": len(failed),
        "frames": frames,
        "dim": dim,
        "seconds": time.time() - started,
    }
