"""What stage-1 pre-training and S2A training share: token data in dynamic batches, AdamW with warm-up
and cosine decay, an optional EMA of the weights, masked cross-entropy and masked-token accuracy.

Config sections: ``model``, ``masking`` (MaskingConfig), ``data`` (max_frames, max_utterance_frames,
pool_size, val_utterances), ``optim`` (lr, betas, weight_decay, warmup_steps, final_lr_ratio), ``ema``
(decay; 0 = off), ``train`` (TrainConfig). Task-specific sections are added by the subclasses.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from metis_cli.config import check_keys, complete_sections, plain, save_config
from metis_cli.data.batching import DynamicBatches, UtteranceArrays
from metis_cli.data.shards import ShardData, StreamBatches, is_shard_dir
from metis_cli.errors import MetisError
from metis_cli.models.masking import MaskingConfig
from metis_cli.train.trainer import TrainConfig, Trainer, step_seed, warmup_cosine

logger = logging.getLogger(__name__)
COMMON_SECTIONS = ("model", "masking", "data", "optim", "ema", "train")


@dataclass
class DataConfig:
    """Section ``data``: dynamic batches by frame count (metis_cli.data.batching)."""

    max_frames: int = 4000  # padded frames per batch (its size times its longest utterance)
    max_utterance_frames: int = 1500  # longer utterances are cropped at a random place
    pool_size: int = 2000  # utterances sorted by length together before batches are cut
    val_utterances: int = 64  # validation utterances (0: no validation)


@dataclass
class OptimConfig:
    """Section ``optim``: AdamW with linear warm-up, then cosine decay to ``final_lr_ratio`` of ``lr``."""

    lr: float = 5e-4
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.01
    warmup_steps: int = 100
    final_lr_ratio: float = 0.1


@dataclass
class EMAConfig:
    """Section ``ema``: an exponential moving average of the weights, what decoding uses (0: none)."""

    decay: float = 0.0


def resolve_sections(config: dict, name: str = "model", data_config=DataConfig) -> dict:
    """``config`` with its typed sections (masking, data, optim, ema, train) completed by the code's defaults,
    so that the saved config.yaml alone reproduces the run; unknown keys are refused."""
    types = {
        "masking": MaskingConfig,
        "data": data_config,
        "optim": OptimConfig,
        "ema": EMAConfig,
        "train": TrainConfig,
    }
    return complete_sections(config, types, f"{name} config")


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mean cross-entropy in nats, number of correct argmax predictions, number of positions) over ``masked``."""
    selected = logits[masked].float()
    labels = targets[masked]
    loss = F.cross_entropy(selected, labels)
    return loss, (selected.argmax(-1) == labels).sum(), int(masked.sum())


class TokenLearner:
    """Base of PretrainLearner and S2ALearner: subclasses set ``kinds``, build ``self.model`` in ``build_model``
    and compute one micro-batch in ``loss``."""

    kinds: tuple[str, ...] = ("ssl_tokens",)
    extra_sections: tuple[str, ...] = ()
    data_config = DataConfig  # the data section's type
    name = "model"
    find_unused_parameters = False  # DDP: True when some parameters sit out some steps
    streams = True  # can train from webdataset shards (metis_cli.data.shards) instead of data dirs
    no_streams_reason = ""  # why not, where ``streams`` is False
    # What validation reports: the loss as "ce_bits" (a cross-entropy in nats, reported in bits) or under its
    # own name (e.g. "mse"), and whether the loss counts correct predictions (the accuracy "acc").
    loss_metric = "ce_bits"
    reports_accuracy = True

    def __init__(self, trainer: Trainer, config: dict, train_dirs, val_dirs=()):
        check_keys(config, COMMON_SECTIONS + self.extra_sections, f"{self.name} config sections")
        config.update(self.resolve(config))
        self.config = config
        data = self.data_config(**config["data"])
        self.masking = MaskingConfig(**config["masking"])
        batching = dict(
            max_frames=data.max_frames,
            max_utterance_frames=data.max_utterance_frames,
            seed=trainer.train.seed,
            pool_size=data.pool_size,
            world_size=trainer.dist.world_size,
            rank=trainer.dist.rank,
        )
        if self.reads_shards(train_dirs):  # webdataset shards (metis data shard), streamed
            self.train_data = ShardData(train_dirs[0], self.kinds)
            self.batches = StreamBatches(self.train_data, **batching)
            n_train = self.train_data.index["utterances"]
        else:
            self.train_data = self.select(UtteranceArrays(train_dirs, self.kinds), validation=False)
            self.batches = DynamicBatches(self.train_data.lengths, **batching)
            n_train = len(self.train_data.lengths)
        self.val_data = self.select(UtteranceArrays(val_dirs, self.kinds), validation=True) if val_dirs else None
        self.val_utterances = data.val_utterances
        trainer.seed_weights()
        model = self.build_model()
        config["model"] = plain(asdict(model.cfg))  # in full: the sizes build_model read from the data, the defaults
        if trainer.dist.main:
            save_config(config, trainer.exp_dir / "config.yaml")
        self.model = trainer.add_model(self.name, model, self.find_unused_parameters)
        optim = OptimConfig(**config["optim"])
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            trainable, lr=float(optim.lr), betas=tuple(optim.betas), weight_decay=float(optim.weight_decay)
        )
        schedule = warmup_cosine(optim.warmup_steps, trainer.train.max_steps, float(optim.final_lr_ratio))
        trainer.add_optimizer(self.name, opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule))
        self.ema_decay = float(config["ema"]["decay"])
        if self.ema_decay:
            ema = copy.deepcopy(model).requires_grad_(False)
            self.ema = trainer.add_model("ema", ema)
        logger.info(
            "%s: %.2fM parameters; %d training utterances (%d batches per epoch)",
            self.name,
            sum(p.numel() for p in model.parameters()) / 1e6,
            n_train,
            self.batches.batches_per_epoch,
        )

    @classmethod
    def resolve(cls, config: dict) -> dict:
        """``config`` with every section but ``model`` completed by the code's defaults (``--print-config``);
        the model section is completed once the data has said its sizes (saved in config.yaml)."""
        return resolve_sections(config, cls.name, cls.data_config)

    def reads_shards(self, train_dirs) -> bool:
        """Whether the training data is a shard dir to stream; shards this learner cannot stream, or shards
        mixed with other dirs, are an error."""
        if not any(is_shard_dir(d) for d in train_dirs):
            return False
        if not self.streams:
            raise MetisError(
                f"{self.no_streams_reason}; shards (metis data shard) are for pre-training and S2A: give "
                "--train-data a data dir"
            )
        if len(train_dirs) != 1:
            raise MetisError(
                f"{self.name} training reads one shard dir (pre-training and S2A) or data dirs, not "
                f"{', '.join(map(str, train_dirs))}"
            )
        return True

    def select(self, data: UtteranceArrays, validation: bool) -> UtteranceArrays:
        """Leaves out utterances the learner cannot use (by deleting them from ``data.lengths``)."""
        return data

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, batch: dict, generator: torch.Generator, model: nn.Module, layer: int | None = None) -> dict:
        """{"loss": tensor, "correct": tensor, "count": int} for one micro-batch (S2A: of codebook
        ``layer``, or one drawn with the codebook weights when None); "correct" only where
        ``reports_accuracy``. Optional: "objective", what is minimised when it is not "loss" (which is what is
        reported and validated), and auxiliary losses under other names, logged in training."""
        raise NotImplementedError

    def make_batch(self, data: UtteranceArrays, pieces, generator: torch.Generator) -> dict:
        """The tensors of one micro-batch (fine-tuning adds its conditions here, drawn with ``generator``)."""
        return data.collate(pieces)

    def validation_layers(self) -> list:
        return [None]

    def train_step(self, trainer: Trainer, step: int) -> dict:
        accum = trainer.train.grad_accum
        totals = {"loss": 0.0}
        correct, count = 0, 0
        for micro in range(accum):
            generator = torch.Generator().manual_seed(step_seed(trainer.train.seed, step, trainer.dist.rank, micro))
            pieces = self.batches(step, micro, accum)
            batch = {
                k: v.to(trainer.dist.device) for k, v in self.make_batch(self.train_data, pieces, generator).items()
            }
            with trainer.autocast():
                out = self.loss(batch, generator, self.model)
            (out.get("objective", out["loss"]) / accum).backward()
            totals["loss"] += float(out["loss"].detach()) / accum
            for key, value in out.items():  # auxiliary losses, logged beside the loss
                if key not in ("loss", "objective", "correct", "count"):
                    totals[key] = totals.get(key, 0.0) + float(value) / accum
            correct += int(out.get("correct", 0))
            count += out["count"]
        if self.reports_accuracy:
            totals["acc"] = correct / max(1, count)
        totals["grad_norm"] = trainer.optimizer_step(self.name, (p for p in self.model.parameters() if p.requires_grad))
        if self.ema_decay:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), trainer.unwrap(self.model).parameters(), strict=True):
                    e.lerp_(p.detach(), 1 - self.ema_decay)
        return totals

    def eval_model(self, trainer: Trainer) -> nn.Module:
        return self.ema if self.ema_decay else trainer.unwrap(self.model)

    @torch.no_grad()
    def validate(self, trainer: Trainer, out_dir) -> dict:
        """Masked cross-entropy (bits; or the ``loss_metric``) and accuracy on the first ``val_utterances`` of the
        validation data (S2A: for every codebook it predicts), with the same masks every time (seed 0), so that the
        numbers are comparable across steps."""
        import json

        if self.val_data is None:
            return {}
        utts = sorted(self.val_data.lengths)[: self.val_utterances]
        if not utts:
            logger.warning("validation: no usable utterances left in %s", ", ".join(map(str, self.val_data.data_dirs)))
            return {}
        batches = DynamicBatches(
            {u: self.val_data.lengths[u] for u in utts}, self.batches.max_frames, self.batches.max_utt, seed=0
        )
        model = self.eval_model(trainer)
        result = {}
        for layer in self.validation_layers():
            generator = torch.Generator().manual_seed(0)
            nats, correct, count = 0.0, 0, 0
            for index in range(batches.batches_per_epoch):
                batch = {
                    k: v.to(trainer.dist.device)
                    for k, v in self.make_batch(self.val_data, batches(index), generator).items()
                }
                with trainer.autocast():
                    out = self.loss(batch, generator, model, layer)
                nats += float(out["loss"]) * out["count"]
                correct += int(out.get("correct", 0))
                count += out["count"]
            suffix = "" if layer is None else f"_cb{layer}"
            if self.loss_metric == "ce_bits":
                result[f"ce_bits{suffix}"] = nats / max(1, count) / math.log(2)
            else:
                result[f"{self.loss_metric}{suffix}"] = nats / max(1, count)
            if self.reports_accuracy:
                result[f"acc{suffix}"] = correct / max(1, count)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        return result
