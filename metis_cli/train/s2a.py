"""``metis train-s2a``: the masked acoustic decoder, codec codes given SSL tokens.

Each batch trains one codebook, drawn with ``codebook_weights`` (one weight per codebook; 0 for the
codebooks this model does not predict); lower codebooks are given as ground truth, the prompt prefix
has every codebook. Config: conf/{mini,full}/s2a*.yaml; ``ssl_vocab_size``, ``n_codebooks`` and
``codebook_size`` may be left empty and are then read from the data's meta.json files.

``model.output: vector`` (the WORLD codec only) trains ``S2AVectorModel`` instead (``S2AVectorLearner``): the
codec's continuous vector of every non-prompt frame, by mean squared error; the codec named in the codes'
meta.json gives its codebooks, copied into the model.
"""

from __future__ import annotations

import logging

import torch

from metis_cli.errors import MetisError
from metis_cli.models.masking import sample_masks
from metis_cli.models.s2a import S2AConfig, S2AModel, S2AVectorModel
from metis_cli.train.pretrain import resolve_vocab
from metis_cli.train.token_learner import TokenLearner, masked_cross_entropy
from metis_cli.train.trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)


class S2ALearner(TokenLearner):
    kinds = ("ssl_tokens", "acoustic_codes")
    extra_sections = ("codebook_weights",)
    name = "s2a"
    find_unused_parameters = True  # the heads of the codebooks not drawn in a step

    def resolve_sizes(self) -> dict:
        """The model section with the sizes left empty read from the data's meta.json files (and checked against
        them where given), and ``predict_codebooks`` every codebook when empty."""
        model_cfg = self.config.setdefault("model", {})
        codes_meta = self.train_data.meta("acoustic_codes")
        resolve_vocab(model_cfg, self.train_data.meta("ssl_tokens"), "ssl_vocab_size", "n_clusters", "ssl_tokens")
        resolve_vocab(model_cfg, codes_meta, "n_codebooks", "n_codebooks", "acoustic_codes")
        resolve_vocab(model_cfg, codes_meta, "codebook_size", "codebook_size", "acoustic_codes")
        if model_cfg.get("predict_codebooks") is None:
            model_cfg["predict_codebooks"] = [0, model_cfg["n_codebooks"]]
        return model_cfg

    def build_model(self):
        cfg = S2AConfig.from_dict(self.resolve_sizes())
        weights = self.config.get("codebook_weights")
        if weights is None:  # the reference's shape: lower codebooks more often
            weights = [cfg.n_codebooks - j if j in cfg.codebooks else 0 for j in range(cfg.n_codebooks)]
            self.config["codebook_weights"] = weights
        if len(weights) != cfg.n_codebooks or any(w < 0 for w in weights):
            raise MetisError(f"codebook_weights must have {cfg.n_codebooks} non-negative entries, got {weights}")
        for j, w in enumerate(weights):
            if w and j not in cfg.codebooks:
                raise MetisError(
                    f"codebook_weights gives codebook {j} weight {w} but the model predicts only "
                    f"codebooks {cfg.predict_codebooks[0]}..{cfg.predict_codebooks[1] - 1}"
                )
        if not any(weights):
            raise MetisError("codebook_weights are all 0")
        self.weights = torch.tensor(weights, dtype=torch.float)
        self.cfg = cfg
        return S2AModel(cfg)

    def validation_layers(self) -> list:
        return list(self.cfg.codebooks)

    def loss(self, batch, generator, model, layer=None):
        codes, ssl_tokens, valid = batch["acoustic_codes"], batch["ssl_tokens"], batch["valid"]
        if layer is None:
            layer = int(torch.multinomial(self.weights, 1, generator=generator))
        t, prompts, masked = sample_masks(batch["lengths"].cpu(), self.masking, generator)
        t, masked = t.to(codes.device), masked.to(codes.device)
        prompt = torch.arange(codes.shape[1], device=codes.device)[None] < prompts.to(codes.device)[:, None]
        logits = model(codes, layer, masked, valid, t, ssl_tokens, prompt)
        loss, correct, count = masked_cross_entropy(logits, codes[..., layer], masked)
        return {"loss": loss, "correct": correct, "count": count}


class S2AVectorLearner(S2ALearner):
    """``model.output: vector``: every non-prompt frame is masked (as at decoding, one pass), the loss is the
    mean squared error of the codec's vector (in the codec's normalised, weighted space, where its VQ measures
    distance) over those frames."""

    loss_metric = "mse"
    reports_accuracy = False
    find_unused_parameters = False

    def build_model(self):
        from metis_cli.codec.inference import load_codec

        codes_meta = self.train_data.meta("acoustic_codes")
        if self.config.get("codebook_weights") is not None:
            raise MetisError("codebook_weights apply to an S2A that predicts codes, not to output 'vector'")
        if codes_meta.get("codec_kind") != "world":
            raise MetisError(
                f"S2A output 'vector' needs codes of the parametric WORLD codec; these acoustic codes come from a "
                f"{codes_meta.get('codec_kind', 'neural')} codec: use output 'codes'"
            )
        codec_dir = codes_meta.get("codec")
        try:
            codec = load_codec(codec_dir)
        except MetisError as e:
            raise MetisError(
                f"S2A output 'vector' copies the codebooks of the codec the codes came from ({codec_dir}, named in "
                f"acoustic_codes/meta.json), which did not load: {e}"
            ) from None
        model_cfg = self.resolve_sizes()
        model_cfg["vector_dim"] = int(codec.codebooks.shape[-1])
        self.cfg = S2AConfig.from_dict(model_cfg)
        model = S2AVectorModel(self.cfg)
        if tuple(model.codebooks.shape) != tuple(codec.codebooks.shape):
            raise MetisError(
                f"the codec {codec_dir} has codebooks of shape {tuple(codec.codebooks.shape)}; the model config "
                f"asks for {tuple(model.codebooks.shape)}"
            )
        model.codebooks.copy_(codec.codebooks)
        return model

    def validation_layers(self) -> list:
        return [None]

    def loss(self, batch, generator, model, layer=None):
        codes, ssl_tokens, valid = batch["acoustic_codes"], batch["ssl_tokens"], batch["valid"]
        _, prompts, _ = sample_masks(batch["lengths"].cpu(), self.masking, generator)
        prompt = torch.arange(codes.shape[1], device=codes.device)[None] < prompts.to(codes.device)[:, None]
        target = valid & ~prompt
        truth = getattr(model, "module", model).vectors(codes).float()  # the model's codebooks, through DDP's wrapper
        predicted = model(truth, valid, ssl_tokens, prompt)  # which reads them on the prompt frames only
        error = (predicted.float() - truth)[target]
        return {"loss": error.pow(2).mean(), "count": int(target.sum())}


def train_s2a(config: dict, exp_dir, train_dirs, val_dirs=()) -> dict:
    trainer = Trainer(exp_dir, config, TrainConfig.from_dict(config.get("train", {})), S2ALearner.resolve)
    vector = (config.get("model") or {}).get("output") == "vector"
    return trainer.fit((S2AVectorLearner if vector else S2ALearner)(trainer, config, train_dirs, val_dirs))
