"""``metis pretrain``: stage-1 pre-training, masked generative modelling of SSL tokens with no condition.

Config: conf/{mini,full}/pretrain.yaml (sections in metis_cli.train.token_learner). ``model.vocab_size``
may be left empty: it is then read from the tokens' meta.json (the k-means size) and saved resolved.
"""

from __future__ import annotations

import logging

from metis_cli.errors import MetisError
from metis_cli.models.masking import sample_masks
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.train.token_learner import TokenLearner, masked_cross_entropy
from metis_cli.train.trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)


def resolve_vocab(config: dict, meta: dict, key: str, meta_key: str, where: str) -> None:
    """Fills ``config[key]`` from the data's meta.json, or checks that both agree."""
    found = meta.get(meta_key)
    if config.get(key) is None:
        if found is None:
            raise MetisError(f"{where}: {meta_key} unknown; set model.{key} in the config")
        config[key] = int(found)
    elif found is not None and int(found) != int(config[key]):
        raise MetisError(
            f"model.{key} is {config[key]} but the data has {meta_key} {found}; "
            f"train on matching data or drop model.{key} from the config"
        )


class PretrainLearner(TokenLearner):
    kinds = ("ssl_tokens",)
    name = "stage1"

    def build_model(self):
        model_cfg = self.config.setdefault("model", {})
        resolve_vocab(model_cfg, self.train_data.meta("ssl_tokens"), "vocab_size", "n_clusters", "ssl_tokens")
        cfg = Stage1Config.from_dict(model_cfg)
        if cfg.n_phones or cfg.frame_condition_dim:
            raise MetisError("pre-training uses no condition: set model.n_phones and model.frame_condition_dim to 0")
        return Stage1Model(cfg)

    def loss(self, batch, generator, model, layer=None):
        tokens, valid = batch["ssl_tokens"], batch["valid"]
        t, _, masked = sample_masks(batch["lengths"].cpu(), self.masking, generator)
        t, masked = t.to(tokens.device), masked.to(tokens.device)
        logits = model(tokens, masked, valid, t)
        loss, correct, count = masked_cross_entropy(logits, tokens, masked)
        return {"loss": loss, "correct": correct, "count": count}


def pretrain(config: dict, exp_dir, train_dirs, val_dirs=()) -> dict:
    trainer = Trainer(exp_dir, config, TrainConfig.from_dict(config.get("train", {})), PretrainLearner.resolve)
    learner = PretrainLearner(trainer, config, train_dirs, val_dirs)
    entropy = learner.train_data.unigram_bits("ssl_tokens", learner.config["model"]["vocab_size"])
    logger.info("unigram entropy of the training tokens: %.3f bits (a context-free model's cross-entropy)", entropy)
    if trainer.dist.main:
        import json

        with open(trainer.exp_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": trainer.step, "unigram_bits": entropy}) + "\n")
    result = trainer.fit(learner)
    result["unigram_bits"] = entropy
    return result
