"""Training the learned VQ SSL tokenizer (``metis train-vq``): L1 reconstruction of the SSL features plus the
codebook and commitment losses, on random fixed-length segments; the model and its tokenizer dir are in
:mod:`metis_cli.tokenizer.vq`."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metis_cli.config import check_keys, complete_sections, plain, save_config
from metis_cli.data.arrays import ArrayStore
from metis_cli.errors import MetisError
from metis_cli.models.transformer import count_parameters
from metis_cli.tokenizer.vq import (
    MODEL_NAME,
    SECTIONS,
    TOKENIZER_DIR,
    VQConfig,
    VQTokenizerModel,
    export_vq,
    feature_dim,
    perplexity,
)
from metis_cli.train.trainer import TrainConfig, Trainer, step_seed, warmup_cosine

logger = logging.getLogger(__name__)


class FeatureSegments:
    """Random ``segment_frames``-frame segments of a feature store, float32 [B, T, dim]. Utterances
    shorter than a segment are left out, so that no frame of a batch is padding."""

    def __init__(self, feats_dir, segment_frames: int):
        self.store = ArrayStore(feats_dir)
        self.dim = feature_dim(self.store)
        self.segment = segment_frames
        lengths = {utt: entry.shape[0] for utt, entry in self.store.entries.items()}
        self.utts = sorted(utt for utt, n in lengths.items() if n >= segment_frames)
        if not self.utts:
            raise MetisError(
                f"{feats_dir}: no utterance has {segment_frames} frames (the longest has {max(lengths.values())}); "
                "lower data.segment_frames"
            )
        if len(self.utts) < len(lengths):
            logger.info(
                "%s: %d of %d utterances are shorter than %d frames and are left out",
                feats_dir,
                len(lengths) - len(self.utts),
                len(lengths),
                segment_frames,
            )

    def batch(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        out = np.empty((size, self.segment, self.dim), dtype=np.float32)
        for i in range(size):
            feats = self.store[self.utts[rng.integers(len(self.utts))]]
            start = rng.integers(0, len(feats) - self.segment + 1)
            out[i] = feats[start : start + self.segment]
        return torch.from_numpy(out)


@dataclass
class VQDataConfig:
    segment_frames: int = 100  # random fixed-length segments of the features
    batch_size: int = 16
    val_utterances: int = 16


@dataclass
class VQOptimConfig:
    lr: float = 1e-3
    betas: list = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    warmup_steps: int = 100
    final_lr_ratio: float = 0.1


def resolve_vq_config(config: dict, model: bool = True) -> dict:
    """The VQ tokenizer's config with every section completed by the code's defaults (unknown keys refused);
    ``model=False`` leaves the model section as given (its input_dim comes from the features)."""
    check_keys(config, SECTIONS, "vq config sections")
    out = complete_sections(config, {"data": VQDataConfig, "optim": VQOptimConfig, "train": TrainConfig}, "vq config")
    if model:
        out["model"] = asdict(VQConfig.from_dict(config.get("model") or {}))
    return plain(out)


def resolve_vq_sections(config: dict) -> dict:
    """``resolve_vq_config`` with the model section as given: what `metis train-vq` and resuming complete a config
    with before the features say the model's input size."""
    return resolve_vq_config(config, model=False)


class VQLearner:
    """Config sections: ``model`` (VQConfig), ``data`` (segment_frames, batch_size, val_utterances),
    ``optim`` (AdamW, warm-up then cosine decay), ``train`` (TrainConfig), ``features`` (the feature
    stores, filled in by ``train_vq``)."""

    def __init__(self, trainer: Trainer, config: dict):
        config.update(resolve_vq_config(config))
        if trainer.dist.main:
            save_config(config, trainer.exp_dir / "config.yaml")
        data, optim, features = VQDataConfig(**config["data"]), VQOptimConfig(**config["optim"]), config["features"]
        self.cfg = VQConfig.from_dict(config["model"])
        self.batch_size = data.batch_size
        self.train_data = FeatureSegments(features["train"], data.segment_frames)
        self.val_store = ArrayStore(features["val"]) if features.get("val") else None
        if self.val_store is not None and feature_dim(self.val_store) != self.cfg.input_dim:
            raise MetisError(
                f"{features['val']}: {feature_dim(self.val_store)}-dim features; the training features have "
                f"{self.cfg.input_dim}"
            )
        self.val_utterances = data.val_utterances
        trainer.seed_weights()
        self.model = trainer.add_model(MODEL_NAME, VQTokenizerModel(self.cfg))
        opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=float(optim.lr),
            betas=tuple(optim.betas),
            weight_decay=float(optim.weight_decay),
        )
        schedule = warmup_cosine(optim.warmup_steps, trainer.train.max_steps, float(optim.final_lr_ratio))
        trainer.add_optimizer(MODEL_NAME, opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule))

    def train_step(self, trainer: Trainer, step: int) -> dict:
        accum = trainer.train.grad_accum
        totals: dict[str, float] = {}
        for micro in range(accum):
            rng = np.random.default_rng(step_seed(trainer.train.seed, step, trainer.dist.rank, micro))
            feats = self.train_data.batch(rng, self.batch_size).to(trainer.dist.device)
            with trainer.autocast():
                out = self.model(feats)
            losses = {
                "reconstruction": F.l1_loss(out["reconstruction"].float(), feats),
                "codebook": out["codebook_loss"].float(),
                "commitment": out["commitment_loss"].float(),
            }
            total = (
                losses["reconstruction"]
                + self.cfg.codebook_weight * losses["codebook"]
                + self.cfg.commitment_weight * losses["commitment"]
            )
            (total / accum).backward()
            counts = torch.bincount(out["codes"].flatten(), minlength=self.cfg.codebook_size)
            values = {
                **losses,
                "total": total,
                "code_perplexity": perplexity(counts),
                "codes_used": int((counts > 0).sum()),
            }
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) / accum
        totals["grad_norm"] = trainer.optimizer_step(MODEL_NAME, self.model.parameters())
        return totals

    @torch.no_grad()
    def validate(self, trainer: Trainer, out_dir: Path) -> dict:
        """Whole held-out utterances: L1 reconstruction per frame, and codebook use over all of them."""
        if self.val_store is None:
            return {}
        model = trainer.unwrap(self.model)
        counts = torch.zeros(self.cfg.codebook_size, dtype=torch.long)
        error, frames = 0.0, 0
        for utt in self.val_store.keys()[: self.val_utterances]:
            feats = torch.from_numpy(np.asarray(self.val_store[utt], dtype=np.float32))[None].to(trainer.dist.device)
            if feats.shape[1] == 0:
                continue
            out = model(feats)
            error += float((out["reconstruction"].float() - feats).abs().mean(-1).sum())
            frames += feats.shape[1]
            counts += torch.bincount(out["codes"].flatten().cpu(), minlength=self.cfg.codebook_size)
        if not frames:
            return {}
        return {
            "reconstruction": error / frames,
            "code_perplexity": perplexity(counts),
            "codes_used": int((counts > 0).sum()),
        }


def train_vq(config: dict, exp_dir, feats_dir, val_feats_dir=None) -> dict:
    """Trains (or resumes) the VQ tokenizer on a feature store, then exports ``<exp_dir>/tokenizer``.
    Returns the trainer's result with ``tokenizer`` (the dir written) added."""
    config = {
        **config,
        "model": dict(config.get("model") or {}),
        "features": {
            "train": str(Path(feats_dir).resolve()),
            "val": str(Path(val_feats_dir).resolve()) if val_feats_dir else None,
        },
    }
    dim = feature_dim(ArrayStore(feats_dir))
    if config["model"].get("input_dim") is None:
        config["model"]["input_dim"] = dim
    elif int(config["model"]["input_dim"]) != dim:
        raise MetisError(
            f"model.input_dim is {config['model']['input_dim']} but the features in {feats_dir} have {dim} dims; "
            "train on matching features or drop model.input_dim from the config"
        )
    trainer = Trainer(exp_dir, config, TrainConfig.from_dict(config.get("train", {})), resolve_vq_sections)
    learner = VQLearner(trainer, config)
    logger.info(
        "vq tokenizer: %.2fM parameters, %d codes of %d dims over %d-dim features",
        count_parameters(trainer.unwrap(learner.model)) / 1e6,
        learner.cfg.codebook_size,
        learner.cfg.codebook_dim,
        learner.cfg.input_dim,
    )
    result = trainer.fit(learner)
    if trainer.dist.main:
        result["tokenizer"] = str(Path(exp_dir) / TOKENIZER_DIR)
        export_vq(exp_dir)
    return result
