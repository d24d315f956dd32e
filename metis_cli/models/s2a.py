"""S2A, the masked acoustic decoder: codec codes given SSL tokens (and an acoustic prompt).

The input of frame f when codebook ``layer`` is being predicted is the sum of the code embeddings that
are known there: codebooks below ``layer`` (ground truth in training, already generated at inference),
codebook ``layer`` itself where it is not masked (one mask embedding where it is), and on prompt frames
every codebook (elsewhere the codebooks above ``layer`` add nothing, or one mask embedding each with
``mask_higher_codebooks``, as the published model of codebooks 1..11). The SSL-token embedding plus an
embedding of ``layer`` goes through an MLP and is added frame by frame. One output head per predicted codebook.

``predict_codebooks: [first, end)`` lets one model predict every codebook (the mini recipes: one model,
half the training) or only some (the reference splits codebook 0 from codebooks 1..11).

``output: vector`` (``S2AVectorModel``, for the parametric WORLD codec only; not in the published model) regresses
the codec's continuous vector (the sum of every codebook's entry) of every non-prompt frame in one pass, instead
of 8 code distributions one codebook at a time: the WORLD codec's residual codebooks are near-uniform details of
a continuous vector that categorical heads do not learn from 33 minutes of speech (docs/world_codec.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from metis_cli.config import check_keys
from metis_cli.errors import MetisError
from metis_cli.models.transformer import MaskedTransformer, TransformerConfig, mlp

OUTPUTS = ("codes", "vector")


@dataclass
class S2AConfig:
    ssl_vocab_size: int = 128
    n_codebooks: int = 8
    codebook_size: int = 1024
    predict_codebooks: tuple[int, int] = (0, 8)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    condition_activation: str = "gelu"  # of the SSL-token condition MLP; the published models: "silu"
    # Codebooks above the predicted one on non-prompt frames: nothing (False), or one mask embedding each
    # (True: the published model of codebooks 1..11 was trained so).
    mask_higher_codebooks: bool = False
    # What the model predicts: "codes" (as published) or "vector" (S2AVectorModel: the WORLD codec's
    # continuous vector, of ``vector_dim`` numbers; the codec's codebooks are kept in the model).
    output: str = "codes"
    vector_dim: int | None = None
    # SSL tokens on either side that a 1-D convolution (kernel 2c + 1, residual) mixes into each frame's token
    # embedding before the condition MLP; 0: none, as published. Ours, for the mini recipes: there the S2A of
    # output vector used the neighbouring tokens no better than a per-token table (docs/world_codec.md).
    condition_context: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "S2AConfig":
        check_keys(d, cls, "S2A model config")
        d = dict(d)
        d["transformer"] = TransformerConfig.from_dict(d.get("transformer", {}))
        cfg = cls(**d)
        first, end = cfg.predict_codebooks = tuple(int(v) for v in cfg.predict_codebooks)
        if not 0 <= first < end <= cfg.n_codebooks:
            raise MetisError(
                f"S2A model config: predict_codebooks {list(cfg.predict_codebooks)} is not a range within "
                f"0..{cfg.n_codebooks}"
            )
        if cfg.output not in OUTPUTS:
            raise MetisError(f"S2A model config: output '{cfg.output}' is not one of {', '.join(OUTPUTS)}")
        if cfg.output == "vector" and not cfg.vector_dim:
            raise MetisError("S2A model config: output 'vector' needs vector_dim (the codec's vector size)")
        if not isinstance(cfg.condition_context, int) or cfg.condition_context < 0:
            raise MetisError(
                f"S2A model config: condition_context {cfg.condition_context!r} is not a number of frames >= 0"
            )
        return cfg

    @property
    def codebooks(self) -> range:
        return range(*self.predict_codebooks)


class TokenContext(nn.Module):
    """The SSL-token embeddings [B, T, d] plus a 1-D convolution of them over +-``context`` frames (padding
    frames read as zeros, so a padded batch gives each utterance what it gets alone)."""

    def __init__(self, dim: int, context: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 2 * context + 1, padding=context)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        emb = emb * valid[..., None].to(emb.dtype)
        return emb + self.conv(emb.transpose(1, 2)).transpose(1, 2)


def token_condition(embedding: nn.Embedding, context: TokenContext | None, tokens, valid) -> torch.Tensor:
    """The embeddings of the SSL tokens [B, T], with their neighbours mixed in where the model has a context."""
    emb = embedding(tokens)
    return emb if context is None else context(emb, valid)


class S2AModel(nn.Module):
    def __init__(self, cfg: S2AConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.transformer.dim
        self.code_emb = nn.ModuleList(nn.Embedding(cfg.codebook_size, d) for _ in range(cfg.n_codebooks))
        self.mask_emb = nn.Parameter(torch.randn(1, d) * 0.02)
        self.ssl_emb = nn.Embedding(cfg.ssl_vocab_size, d)
        self.layer_emb = nn.Embedding(cfg.n_codebooks, d)
        self.ssl_context = TokenContext(d, cfg.condition_context) if cfg.condition_context else None
        self.cond_mlp = mlp(d, 4 * d, activation=cfg.condition_activation)
        self.transformer = MaskedTransformer(cfg.transformer)
        self.heads = nn.ModuleList(nn.Linear(d, cfg.codebook_size) for _ in cfg.codebooks)

    def check_layer(self, layer: int) -> None:
        if layer not in self.cfg.codebooks:
            raise MetisError(
                f"this S2A model predicts codebooks {self.cfg.predict_codebooks[0]}.."
                f"{self.cfg.predict_codebooks[1] - 1}, not codebook {layer}"
            )

    def hidden(self, codes, layer: int, masked, valid, t, ssl_tokens, prompt) -> torch.Tensor:
        """codes [B, T, n_codebooks] (values above ``layer`` are read on prompt frames only, masked values
        never); masked, valid, prompt: [B, T] bool; t: [B]; ssl_tokens: [B, T] -> hidden [B, T, d]."""
        self.check_layer(layer)
        x = 0
        for j in range(layer):
            x = x + self.code_emb[j](codes[..., j])
        x = x + torch.where(
            masked[..., None], self.mask_emb, self.code_emb[layer](codes[..., layer].masked_fill(masked, 0))
        )
        for j in range(layer + 1, self.cfg.n_codebooks):
            known = self.code_emb[j](codes[..., j])
            x = x + (
                torch.where(prompt[..., None], known, self.mask_emb)
                if self.cfg.mask_higher_codebooks
                else known * prompt[..., None]
            )
        layer_ids = torch.full_like(ssl_tokens, layer)
        x = x + self.cond_mlp(
            token_condition(self.ssl_emb, self.ssl_context, ssl_tokens, valid) + self.layer_emb(layer_ids)
        )
        return self.transformer(x, valid, t)

    def logits(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        return self.heads[layer - self.cfg.predict_codebooks[0]](hidden)

    def forward(self, codes, layer: int, masked, valid, t, ssl_tokens, prompt) -> torch.Tensor:
        return self.logits(self.hidden(codes, layer, masked, valid, t, ssl_tokens, prompt), layer)


class S2AVectorModel(nn.Module):
    """S2A for a codec with a continuous vector behind its codes (the WORLD codec): the vector of every
    non-prompt frame, regressed in one pass from the SSL tokens and the prompt's vectors. The input of a frame
    is the SSL-token condition plus, on prompt frames, a projection of the vector of its codes (the sum of the
    codebook entries in ``codebooks``, a copy of the codec's), elsewhere one mask embedding."""

    def __init__(self, cfg: S2AConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.transformer.dim
        self.register_buffer("codebooks", torch.zeros(cfg.n_codebooks, cfg.codebook_size, cfg.vector_dim))
        self.mask_emb = nn.Parameter(torch.randn(1, d) * 0.02)
        self.ssl_emb = nn.Embedding(cfg.ssl_vocab_size, d)
        self.ssl_context = TokenContext(d, cfg.condition_context) if cfg.condition_context else None
        self.cond_mlp = mlp(d, 4 * d, activation=cfg.condition_activation)
        self.vector_in = nn.Linear(cfg.vector_dim, d)
        self.transformer = MaskedTransformer(cfg.transformer)
        self.head = nn.Linear(d, cfg.vector_dim)

    def vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [..., n_codebooks] -> the codec's vectors [..., vector_dim]."""
        return sum(self.codebooks[j][codes[..., j]] for j in range(self.cfg.n_codebooks))

    def forward(self, vectors, valid, ssl_tokens, prompt) -> torch.Tensor:
        """vectors [B, T, vector_dim] (``vectors(codes)``; read on prompt frames only); valid, prompt: [B, T] bool;
        ssl_tokens [B, T] -> vectors [B, T, vector_dim] (meaningful on valid non-prompt frames)."""
        known = self.vector_in(vectors.to(self.mask_emb.dtype))
        condition = self.cond_mlp(token_condition(self.ssl_emb, self.ssl_context, ssl_tokens, valid))
        x = torch.where(prompt[..., None], known, self.mask_emb) + condition
        t = torch.ones(len(x), device=x.device)  # every frame it predicts is masked
        return self.head(self.transformer(x, valid, t))


def build_s2a(cfg: S2AConfig) -> S2AModel | S2AVectorModel:
    """The S2A model its config's ``output`` names."""
    return S2AVectorModel(cfg) if cfg.output == "vector" else S2AModel(cfg)
