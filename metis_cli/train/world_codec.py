"""``metis codec train`` for a config of ``model.kind: world``: the parametric codec's quantiser, learned by
k-means on the train set's WORLD features, no gradient training.

It runs through the shared Trainer, so its exp dir is like any other (config.yaml, command.txt, git
revision, ``checkpoints/step_N/codec.safetensors``, metrics.jsonl, log/, val/): step N fits codebook N-1
(step 1 also the normalisation), each step is checkpointed, and a killed run resumes at the next
codebook. The features themselves are kept in ``<exp>/features`` (a resumable array store), so a rerun
analyses only what it had not.

Config sections (conf/mini/codec.yaml): ``model`` (WorldCodecConfig, ``kind: world``), ``data``
(``max_utterances``: analyse at most this many train utterances, a seeded pick, empty = all;
``num_jobs``: analysis processes; ``val_utterances``), ``train`` (``seed``, ``kmeans_backend``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metis_cli.codec.world import WorldCodec, WorldCodecConfig, analyse
from metis_cli.config import check_keys, complete_sections, plain, save_config
from metis_cli.data.arrays import ArrayStore, ShardedWriter, write_meta
from metis_cli.data.datadir import DataDir, id_path
from metis_cli.errors import MetisError
from metis_cli.tokenizer.kmeans import learn_kmeans
from metis_cli.train.trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)
SECTIONS = ("model", "data", "train")


def _features_job(job):
    from metis_cli.audio import load_audio

    utt, source, start, end, cfg = job
    try:
        wav, _ = load_audio(source, cfg.sample_rate, start=start, end=end, utt_id=utt, commands=True)
        return utt, analyse(wav, cfg), ""
    except MetisError as exc:
        return utt, None, f"utterance '{utt}': {exc}"


def analyse_datadir(
    data_dir, out_dir, cfg: WorldCodecConfig, utts=None, num_jobs: int = 1, what: str = "analyse"
) -> dict:
    """WORLD features of a data dir's utterances (all, or ``utts``) into an array store at ``out_dir``;
    resumable (what the store holds is not analysed again). Returns {utterance: reason} of the failed."""
    data = DataDir(data_dir)
    sources = data.audio_sources()
    utts = sorted(sources) if utts is None else sorted(utts)
    writer = ShardedWriter(out_dir, utts, num_jobs)
    todo = [(u, *sources[u], cfg) for u in utts if u not in writer.done]
    pool = ProcessPoolExecutor(num_jobs) if num_jobs > 1 and len(todo) > 1 else None
    results = pool.map(_features_job, todo, chunksize=4) if pool else map(_features_job, todo)
    try:
        failed = writer.write_all(results, len(todo), f"{what} {data.path.name}")
    finally:
        if pool is not None:
            pool.shutdown()
    write_meta(
        out_dir,
        kind="world_features",
        data_dir=str(data.path.resolve()),
        sample_rate=cfg.sample_rate,
        hop_length=cfg.hop_length,
        dim=cfg.feature_dim,
    )
    return failed


def fit_quantizer(codec: WorldCodec, residual: torch.Tensor, index: int, seed: int = 0, backend: str = "auto") -> float:
    """Learns codebook ``index`` on ``residual`` [N, dim] (what the codebooks before it leave of the train set's
    vectors; updated in place for the next). Returns the mean squared error left after it."""
    q = codec.cfg.quantizer
    pitch = q.pitch_codebook is not None
    book = torch.zeros(q.codebook_size, residual.shape[1])
    if index == q.pitch_codebook:
        # entry 0: unvoiced (the voicing flag's low value); the rest: log-F0 levels of the voiced frames
        voiced = residual[:, 1] > 0
        if int(voiced.sum()) < q.codebook_size - 1:
            raise MetisError(
                f"{int(voiced.sum())} voiced training frames are fewer than the {q.codebook_size - 1} pitch levels; "
                "give more audio"
            )
        levels, _ = learn_kmeans(
            residual[voiced, :1].numpy(), q.codebook_size - 1, iters=q.kmeans_iters, seed=seed, backend=backend
        )
        book[1:, 0] = torch.from_numpy(np.sort(np.asarray(levels, dtype=np.float32)[:, 0]))
        book[0, 1], book[1:, 1] = float(residual[~voiced, 1].mean()), float(residual[voiced, 1].mean())
    else:
        if len(residual) < q.codebook_size:
            raise MetisError(
                f"{len(residual)} training frames are fewer than codebook_size {q.codebook_size}; give more audio or "
                "a smaller codebook"
            )
        points = residual.clone()
        if pitch:  # the pitch codebook alone codes pitch and voicing
            points[:, :2] = 0
        centroids, _ = learn_kmeans(points.numpy(), q.codebook_size, iters=q.kmeans_iters, seed=seed, backend=backend)
        book = torch.from_numpy(np.asarray(centroids, dtype=np.float32))
        if pitch:
            book[:, :2] = 0
    codec.codebooks[index] = book
    residual -= book[codec.assign(residual, index)]
    return float((residual**2).sum(1).mean())


@dataclass
class WorldDataConfig:
    max_utterances: int | None = None  # analyse at most this many train utterances (a seeded pick); None: all
    num_jobs: int = 1  # analysis processes
    val_utterances: int = 4


@dataclass
class WorldTrainConfig:
    seed: int = 0
    kmeans_backend: str = "auto"


def resolve_world_config(config: dict) -> dict:
    """The WORLD codec's config with every section completed by the code's defaults (unknown keys refused)."""
    check_keys(config, SECTIONS, "codec config sections (kind world)")
    out = complete_sections(config, {"data": WorldDataConfig, "train": WorldTrainConfig}, "codec config (kind world)")
    out["model"] = WorldCodecConfig.from_dict(config.get("model") or {}).to_dict()
    return plain(out)


class WorldCodecLearner:
    """One Trainer step per codebook: step s fits codebook s (step 0 also the normalisation)."""

    def __init__(self, trainer: Trainer, config: dict, train_dir, val_dir=None):
        config.update(resolve_world_config(config))
        if trainer.dist.main:
            save_config(config, trainer.exp_dir / "config.yaml")
        data, train = WorldDataConfig(**config["data"]), WorldTrainConfig(**config["train"])
        self.cfg = WorldCodecConfig.from_dict(config["model"])
        self.backend = train.kmeans_backend
        self.val_dir, self.num_val = val_dir, data.val_utterances
        trainer.seed_weights()
        self.codec = trainer.add_model("codec", WorldCodec(self.cfg))
        utts = sorted(DataDir(train_dir).audio_sources())
        if not utts:
            raise MetisError(f"{train_dir}: no utterances to train the codec on")
        limit = data.max_utterances
        if limit and len(utts) > int(limit):
            rng = np.random.default_rng(trainer.train.seed)
            utts = sorted(rng.choice(utts, int(limit), replace=False).tolist())
        store = trainer.exp_dir / "features"
        failed = analyse_datadir(train_dir, store, self.cfg, utts, data.num_jobs, what="WORLD analysis")
        if failed:
            logger.warning("%d training utterance(s) could not be analysed (see the log above)", len(failed))
        features = ArrayStore(store)
        self.residual: torch.Tensor | None = None  # kept from step to step; fit_quantizer updates it
        self.features = np.concatenate([np.asarray(features[u]) for u in utts if u in features])
        logger.info(
            "codec: %d frames of WORLD features (%d dims) from %d utterances of %s",
            len(self.features),
            self.cfg.feature_dim,
            len(features),
            train_dir,
        )

    def train_step(self, trainer: Trainer, step: int) -> dict:
        codec: WorldCodec = trainer.unwrap(self.codec)
        q = self.cfg.quantizer
        if step == 0:
            codec.fit_normalisation(self.features)
        if step == 0 or self.residual is None:  # the residual the earlier codebooks leave (a resumed run: once)
            self.residual = codec.residual_vq(codec.to_vectors(self.features), step)[1]
        error = fit_quantizer(codec, self.residual, step, seed=trainer.train.seed + step, backend=self.backend)
        return {"quantisation_error": error, "codebook": step, "of": q.n_codebooks}

    @torch.no_grad()
    def validate(self, trainer: Trainer, out_dir: Path) -> dict:
        """Encodes and decodes a few held-out utterances: STOI, and the decoded wavs."""
        from pystoi import stoi

        from metis_cli.audio import load_audio, save_audio

        if self.val_dir is None:
            return {}
        codec: WorldCodec = trainer.unwrap(self.codec)
        sources = DataDir(self.val_dir).audio_sources()
        scores = []
        for utt in sorted(sources)[: self.num_val]:
            wav, _ = load_audio(
                sources[utt][0],
                self.cfg.sample_rate,
                start=sources[utt][1],
                end=sources[utt][2],
                utt_id=utt,
                commands=True,
            )
            decoded = codec.decode(codec.encode(torch.from_numpy(wav)[None]))[0].numpy()
            ref = wav[: len(decoded)]
            scores.append(float(stoi(ref, decoded, self.cfg.sample_rate)))
            save_audio(id_path(out_dir, utt, ".wav"), decoded, self.cfg.sample_rate)
        return {"stoi": float(np.mean(scores))} if scores else {}


def train_world_codec(config: dict, exp_dir, train_dir, val_dir=None) -> dict:
    cfg = WorldCodecConfig.from_dict(config.get("model", {}))
    n = cfg.quantizer.n_codebooks
    train = TrainConfig(
        max_steps=n,
        log_every=1,
        ckpt_every=1,
        val_every=n,
        keep_checkpoints=1,
        seed=int((config.get("train") or {}).get("seed", 0)),
    )
    trainer = Trainer(exp_dir, config, train, resolve_world_config)
    learner = WorldCodecLearner(trainer, config, train_dir, val_dir)
    logger.info("codec (WORLD): %d x %d codes per frame, %.0f bit/s", n, cfg.quantizer.codebook_size, cfg.bitrate)
    return trainer.fit(learner)
