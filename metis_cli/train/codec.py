"""``metis codec train``: the codec learner for the shared Trainer.

Config sections (conf/full/codec.yaml, conf/mini/codec_neural.yaml): ``model`` (CodecConfig), ``data`` (segment length,
batch size, ``cache_gb``: how much training audio is kept in memory, the rest being read segment by
segment), ``optim`` (AdamW, warm-up then cosine decay), ``loss`` (weights), ``discriminator`` (on/off
and sizes), ``train`` (TrainConfig: steps, checkpoints, validation, time budget).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from metis_cli.codec.losses import (
    Discriminators,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_loss,
    generator_losses,
)
from metis_cli.codec.model import Codec, CodecConfig
from metis_cli.codec.world import codec_kind
from metis_cli.config import check_keys, complete_sections, plain, save_config
from metis_cli.data.datadir import DataDir, id_path
from metis_cli.errors import MetisError
from metis_cli.train.trainer import TrainConfig, Trainer, step_seed, warmup_cosine

logger = logging.getLogger(__name__)
SECTIONS = ("model", "data", "optim", "loss", "discriminator", "train")


class AudioSegments:
    """Random fixed-length segments of a data dir's audio at the codec's rate.

    Whole utterances are kept in memory after their first use while they fit in ``cache_gb``; past
    that, each segment is read from its file alone (a seek and a short read; with a margin around it
    when the file is at another rate, which is resampled, and the log says so once). So a corpus of any
    size trains in bounded memory. The segment's position comes from the length in the file's header
    whichever way it is read, so batches do not depend on what happens to be cached (a resumed run
    draws the same segments)."""

    RESAMPLE_MARGIN = 0.05  # seconds read on each side of a segment that is resampled (soxr's edge effects)

    def __init__(self, data_dir, sample_rate: int, segment_samples: int, cache_gb: float = 2.0):
        self.data = DataDir(data_dir)
        self.sources = self.data.audio_sources()
        self.utts = sorted(self.sources)
        if not self.utts:
            raise MetisError(f"{data_dir}: no utterances")
        self.sample_rate, self.segment = sample_rate, segment_samples
        self.cache: dict[str, np.ndarray] = {}
        self.cache_bytes, self.cache_limit = 0, int(cache_gb * 2**30)
        self.lengths: dict[str, tuple[int, int]] = {}  # utt -> (file rate, samples at the codec's rate)
        self._warned = False

    def length(self, utt: str) -> tuple[int, int]:
        """(the file's sample rate, the utterance's length in samples at the codec's rate), from the header."""
        if utt not in self.lengths:
            from metis_cli.audio import audio_info

            source, start, end = self.sources[utt]
            info = audio_info(source, utt_id=utt, commands=True)
            rate = info.sample_rate
            if rate != self.sample_rate and not self._warned:
                logger.info(
                    "resampling %s audio from %d Hz to the codec's %d Hz", self.data.path, rate, self.sample_rate
                )
                self._warned = True
            first = int(round(start * rate))
            native = (info.frames if end is None else int(round(end * rate))) - first
            self.lengths[utt] = rate, max(0, native * self.sample_rate // rate)
        return self.lengths[utt]

    def fits(self, nbytes: int) -> bool:
        """Whether the cache has room for ``nbytes`` more."""
        return self.cache_bytes + nbytes <= self.cache_limit

    def audio(self, utt: str) -> np.ndarray:
        """The whole utterance at the codec's rate (cached while the cache has room)."""
        if utt in self.cache:
            return self.cache[utt]
        from metis_cli.audio import load_audio

        self.length(utt)  # the resampling note, once
        source, start, end = self.sources[utt]
        wav = load_audio(source, self.sample_rate, start=start, end=end, utt_id=utt, commands=True)[0]
        if self.fits(wav.nbytes):
            self.cache[utt] = wav
            self.cache_bytes += wav.nbytes
        return wav

    def read_segment(self, utt: str, offset: int) -> np.ndarray:
        """Samples ``offset``.. ``offset + segment`` of the utterance, read from its file alone. A file at
        another rate is read from a point where both rates' sample grids meet, a margin before the
        segment, so the resampled samples line up with those of the whole utterance resampled."""
        import math

        from metis_cli.audio import load_audio

        rate, _ = self.length(utt)
        source, start, end = self.sources[utt]
        s0, sr = int(round(start * rate)), self.sample_rate
        if rate == sr:
            k0 = offset
        else:
            step = sr // math.gcd(rate, sr)  # codec samples between shared grid points
            k0 = max(0, (offset - int(self.RESAMPLE_MARGIN * sr)) // step * step)
        first = s0 + k0 * rate // sr
        last = (
            s0
            + math.ceil((offset + self.segment) * rate / sr)
            + (0 if rate == sr else int(self.RESAMPLE_MARGIN * rate))
        )
        if end is not None:
            last = min(last, int(round(end * rate)))
        wav = load_audio(source, sr, start=first / rate, end=last / rate, utt_id=utt, commands=True)[0]
        return wav[offset - k0 : offset - k0 + self.segment]

    def batch(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        out = np.zeros((size, self.segment), dtype=np.float32)
        for i in range(size):
            utt = self.utts[rng.integers(len(self.utts))]
            length = self.length(utt)[1]
            offset = int(rng.integers(0, length - self.segment)) if length > self.segment else 0
            if utt in self.cache or self.fits(4 * length):  # float32 samples
                piece = self.audio(utt)[offset : offset + self.segment]
            else:
                piece = self.read_segment(utt, offset)
            out[i, : len(piece)] = piece
        return torch.from_numpy(out)


def code_perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """Mean over codebooks of 2^entropy of the batch's codes: how many codes are in effective use."""
    from metis_cli.data.batching import entropy_bits

    values = [
        2 ** entropy_bits(torch.bincount(codes[..., j].flatten(), minlength=codebook_size).cpu().numpy())
        for j in range(codes.shape[-1])
    ]
    return sum(values) / len(values)


@dataclass
class CodecDataConfig:
    batch_size: int = 8
    segment_seconds: float = 1.0  # random segments of the training audio
    cache_gb: float = 2.0  # decoded audio kept in memory
    val_utterances: int = 4


@dataclass
class CodecOptimConfig:
    """AdamW (generator and discriminators), linear warm-up then cosine decay to ``final_lr_ratio`` of ``lr``."""

    lr: float = 1e-3
    betas: list = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.0
    warmup_steps: int = 100
    final_lr_ratio: float = 0.1


@dataclass
class CodecLossConfig:
    weights: dict = field(default_factory=dict)  # of LOSS_WEIGHTS' terms (commitment: the quantizer's own)
    mel: dict = field(default_factory=dict)  # MultiScaleMelLoss settings


@dataclass
class DiscriminatorConfig:
    enabled: bool = False
    start_step: int = 0
    periods: list = field(default_factory=lambda: [2, 3, 5, 7, 11])
    resolutions: list = field(default_factory=lambda: [512, 1024, 2048])
    channels: int = 32


LOSS_WEIGHTS = {"mel": 15.0, "stft": 1.0, "codebook": 1.0, "adversarial": 1.0, "feature_matching": 2.0}
SECTION_TYPES = {
    "data": CodecDataConfig,
    "optim": CodecOptimConfig,
    "loss": CodecLossConfig,
    "discriminator": DiscriminatorConfig,
    "train": TrainConfig,
}


def resolve_codec_config(config: dict) -> dict:
    """The neural codec's config with every section completed by the code's defaults (unknown keys refused)."""
    check_keys(config, SECTIONS, "codec config sections")
    out = complete_sections(config, SECTION_TYPES, "codec config")
    check_keys(out["loss"]["weights"], (*LOSS_WEIGHTS, "commitment"), "codec config loss.weights")
    model = asdict(CodecConfig.from_dict(config.get("model") or {}))
    out["model"] = {"kind": "neural", **model}
    return plain(out)


def resolve_config(config: dict) -> dict:
    """Either kind of codec's config, completed by the code's defaults."""
    if codec_kind(config.get("model") or {}) == "world":
        from metis_cli.train.world_codec import resolve_world_config

        return resolve_world_config(config)
    return resolve_codec_config(config)


class CodecLearner:
    def __init__(self, trainer: Trainer, config: dict, train_dir, val_dir=None):
        config.update(resolve_codec_config(config))
        if trainer.dist.main:
            save_config(config, trainer.exp_dir / "config.yaml")
        self.cfg = CodecConfig.from_dict(config["model"])
        data = CodecDataConfig(**config["data"])
        optim = CodecOptimConfig(**config["optim"])
        loss = config["loss"]
        disc = DiscriminatorConfig(**config["discriminator"])
        self.batch_size = data.batch_size
        self.loss_weights = {
            **LOSS_WEIGHTS,
            "commitment": self.cfg.quantizer.commitment_weight,
            **loss["weights"],
        }
        segment = int(float(data.segment_seconds) * self.cfg.sample_rate) // self.cfg.hop_length * self.cfg.hop_length
        self.train_data = AudioSegments(train_dir, self.cfg.sample_rate, segment, float(data.cache_gb))
        # One thread reads the next step's audio while this step computes (every batch goes through it,
        # so the segment cache is only ever touched by that thread).
        from concurrent.futures import ThreadPoolExecutor

        self._reader = ThreadPoolExecutor(1, thread_name_prefix="codec-audio")
        self._pending: dict[tuple[int, int], object] = {}
        self.val_dir = val_dir
        self.num_val_examples = data.val_utterances

        device = trainer.dist.device
        trainer.seed_weights()
        self.codec = trainer.add_model("codec", Codec(self.cfg))
        self.mel_loss = MultiScaleMelLoss(self.cfg.sample_rate, **loss["mel"]).to(device)
        self.stft_loss = MultiResolutionSTFTLoss().to(device)
        total = trainer.train.max_steps
        schedule = warmup_cosine(optim.warmup_steps, total, float(optim.final_lr_ratio))
        betas = tuple(optim.betas)
        opt = torch.optim.AdamW(
            self.codec.parameters(), lr=float(optim.lr), betas=betas, weight_decay=float(optim.weight_decay)
        )
        trainer.add_optimizer("generator", opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule))
        self.use_disc = disc.enabled
        self.disc_start = disc.start_step
        if self.use_disc:
            nets = Discriminators(tuple(disc.periods), tuple(disc.resolutions), disc.channels)
            self.disc = trainer.add_model("discriminator", nets)
            d_opt = torch.optim.AdamW(self.disc.parameters(), lr=float(optim.lr), betas=betas)
            trainer.add_optimizer("discriminator", d_opt, torch.optim.lr_scheduler.LambdaLR(d_opt, schedule))

    def _prefetch(self, trainer: Trainer, step: int, micro: int) -> None:
        if (step, micro) not in self._pending:
            rng = np.random.default_rng(step_seed(trainer.train.seed, step, trainer.dist.rank, micro))
            self._pending[(step, micro)] = self._reader.submit(self.train_data.batch, rng, self.batch_size)

    def _batch(self, trainer: Trainer, step: int, micro: int) -> torch.Tensor:
        """The audio of a step's micro-batch: the same for a given seed, step, rank and micro-batch
        whether it was read ahead or not."""
        self._prefetch(trainer, step, micro)
        for key in [k for k in self._pending if k < (step, micro)]:  # read ahead for a step not taken
            self._pending.pop(key).cancel()
        return self._pending.pop((step, micro)).result()

    def train_step(self, trainer: Trainer, step: int) -> dict:
        accum = trainer.train.grad_accum
        device = trainer.dist.device
        gan = self.use_disc and step >= self.disc_start
        totals: dict[str, float] = {}
        for micro in range(accum):
            real = self._batch(trainer, step, micro).to(device)
            self._prefetch(trainer, step + 1 if micro == accum - 1 else step, (micro + 1) % accum)
            with trainer.autocast():
                out = self.codec(real)
            fake = out["wav"].float()
            losses = {
                "mel": self.mel_loss(fake, real),
                "stft": self.stft_loss(fake, real),
                "commitment": out["commitment_loss"],
                "codebook": out["codebook_loss"],
            }
            if gan:
                d_loss = discriminator_loss(self.disc(real), self.disc(fake.detach()))
                (d_loss / accum).backward()
                totals["discriminator"] = totals.get("discriminator", 0.0) + float(d_loss.detach()) / accum
                # The generator's losses must not leave gradients in the discriminator.
                self.disc.requires_grad_(False)
                losses["adversarial"], losses["feature_matching"] = generator_losses(self.disc(real), self.disc(fake))
            total = sum(self.loss_weights[k] * v for k, v in losses.items())
            (total / accum).backward()
            if gan:
                self.disc.requires_grad_(True)
            for k, v in {
                **losses,
                "total": total,
                "code_perplexity": code_perplexity(out["codes"], self.cfg.quantizer.codebook_size),
            }.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) / accum
        totals["grad_norm"] = trainer.optimizer_step("generator", self.codec.parameters())
        if gan:
            trainer.optimizer_step("discriminator", self.disc.parameters())
        return totals

    @torch.no_grad()
    def validate(self, trainer: Trainer, out_dir: Path) -> dict:
        """Encodes and decodes a few held-out utterances: mel loss, STOI, and the decoded wavs."""
        from pystoi import stoi

        from metis_cli.audio import save_audio

        if self.val_dir is None:
            return {}
        data = AudioSegments(self.val_dir, self.cfg.sample_rate, self.cfg.hop_length, cache_gb=0)
        codec = trainer.unwrap(self.codec)
        mel, stois = [], []
        for utt in data.utts[: self.num_val_examples]:
            wav = torch.from_numpy(data.audio(utt))[None].to(trainer.dist.device)
            decoded = codec.decode(codec.encode(wav))[:, : wav.shape[-1]]
            mel.append(float(self.mel_loss(decoded, wav)))
            ref, est = wav[0].cpu().numpy(), decoded[0].cpu().numpy()
            stois.append(float(stoi(ref, est, self.cfg.sample_rate)))
            save_audio(id_path(out_dir, utt, ".wav"), est, self.cfg.sample_rate)
        return {"mel": float(np.mean(mel)), "stoi": float(np.mean(stois))}


def train_codec(config: dict, exp_dir, train_dir, val_dir=None) -> dict:
    """Trains the codec ``config`` describes: a neural one by gradient steps, or (``model.kind: world``)
    the parametric one's quantiser by k-means (metis_cli.train.world_codec)."""
    if codec_kind(config.get("model", {})) == "world":
        from metis_cli.train.world_codec import train_world_codec

        return train_world_codec(config, exp_dir, train_dir, val_dir)
    trainer = Trainer(exp_dir, config, TrainConfig.from_dict(config.get("train", {})), resolve_codec_config)
    learner = CodecLearner(trainer, config, train_dir, val_dir)
    counts = trainer.unwrap(learner.codec).parameter_counts()
    logger.info(
        "codec: %s parameters; %.0f bit/s",
        ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in counts.items()),
        learner.cfg.bitrate,
    )
    return trainer.fit(learner)
