"""The stage-1 model: masked generative modelling of SSL tokens.

Pre-training uses no condition at all: the input is ``[prompt tokens ; target tokens]`` where masked
positions hold one learned mask embedding. Fine-tuning adds a condition through one of two hooks, both
off (absent) in a pre-trained model:

- a text prefix (``n_phones > 0``): phone embeddings through an MLP, placed before the tokens;
- a frame adapter (``frame_condition_dim > 0``): per-frame condition features (SSL features of the source /
  noisy / mixture audio, visual features, TTS's placed phones one-hot) through ``Linear -> SiLU -> Linear``,
  added to the token embeddings frame by frame. Its output starts at 0, so fine-tuning starts from exactly the
  pre-trained model: through a scalar gate initialised to 0 (``adapter_gate``, the reference's adapter for
  SSL-feature conditions), or, without a gate (the reference's lip-to-speech adapter), through an output layer
  initialised to 0. A zero gate passes no gradient to the layers before it, which is fine for informative
  inputs (SSL features) but leaves a visual front end trained from scratch with none: it never learns, and the
  gate never sees a consistent signal;
- for lip-to-speech, a visual front end (``visual``, metis_cli.models.visual) that turns mouth video into
  the frame adapter's input, trained with it.

``phone_ctc`` (TTS fine-tuning only, not in the published model) adds a linear layer from the token positions'
hidden states to the phones, for an auxiliary CTC loss (class 0, the prefix's padding id, is the CTC blank): it
makes every frame say which phone it is, which masked frames can only learn from the text prefix. Decoding never
uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from metis_cli.config import check_keys
from metis_cli.errors import MetisError
from metis_cli.models.transformer import MaskedTransformer, TransformerConfig, mlp
from metis_cli.models.visual import VisualConfig, VisualFrontEnd


@dataclass
class Stage1Config:
    vocab_size: int = 128
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    n_phones: int = 0
    frame_condition_dim: int = 0
    visual: dict | None = None  # VisualConfig of the lip-to-speech front end (its out_dim feeds the frame adapter)
    adapter_gate: bool = True  # frame adapter behind a zero-initialised gate; False: zero-initialised output layer
    prefix_activation: str = "gelu"  # of the text-prefix MLP; the published models: "silu"
    phone_ctc: bool = False  # an auxiliary phone CTC head (training only; needs n_phones)

    @classmethod
    def from_dict(cls, d: dict) -> "Stage1Config":
        check_keys(d, cls, "stage-1 model config")
        d = dict(d)
        d["transformer"] = TransformerConfig.from_dict(d.get("transformer", {}))
        return cls(**d)


class FrameAdapter(nn.Module):
    """``gate * Linear(SiLU(Linear(x)))`` with the gate initialised to 0 (``gated``), or
    ``Linear(SiLU(Linear(x)))`` with the output layer initialised to 0: either way it adds nothing at first."""

    def __init__(self, in_dim: int, dim: int, gated: bool = True):
        super().__init__()
        self.in_linear = nn.Linear(in_dim, 4 * dim)
        self.out_linear = nn.Linear(4 * dim, dim)
        if gated:
            self.gate_scale = nn.Parameter(torch.zeros(1))
        else:
            self.gate_scale = None
            nn.init.zeros_(self.out_linear.weight)
            nn.init.zeros_(self.out_linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out_linear(nn.functional.silu(self.in_linear(x)))
        return out if self.gate_scale is None else self.gate_scale * out


class Stage1Model(nn.Module):
    def __init__(self, cfg: Stage1Config):
        super().__init__()
        self.cfg = cfg
        d = cfg.transformer.dim
        self.token_emb = nn.Embedding(cfg.vocab_size, d)
        self.mask_emb = nn.Parameter(torch.randn(1, d) * 0.02)
        self.transformer = MaskedTransformer(cfg.transformer)
        self.head = nn.Linear(d, cfg.vocab_size)
        if cfg.n_phones:
            self.phone_emb = nn.Embedding(cfg.n_phones, d)
            self.prefix_mlp = mlp(d, 4 * d, activation=cfg.prefix_activation)
        if cfg.phone_ctc:
            if not cfg.n_phones:
                raise MetisError("stage-1 model config: phone_ctc needs a text prefix (n_phones > 0)")
            self.phone_ctc = nn.Linear(d, cfg.n_phones)
        if cfg.frame_condition_dim:
            self.frame_adapter = FrameAdapter(cfg.frame_condition_dim, d, cfg.adapter_gate)
        if cfg.visual:
            self.visual = VisualFrontEnd(VisualConfig.from_dict(cfg.visual))
            if self.visual.cfg.out_dim != cfg.frame_condition_dim:
                raise MetisError(
                    f"visual.out_dim {self.visual.cfg.out_dim} must equal frame_condition_dim {cfg.frame_condition_dim}"
                )

    def embed(self, tokens, masked, frame_condition=None):
        x = torch.where(
            masked[..., None],
            self.mask_emb.to(self.token_emb.weight.dtype),
            self.token_emb(tokens.masked_fill(masked, 0)),
        )
        if frame_condition is not None:
            if not self.cfg.frame_condition_dim:
                raise MetisError("this stage-1 model has no frame adapter (frame_condition_dim is 0)")
            x = x + self.frame_adapter(frame_condition.to(x.dtype))
        return x

    def visual_condition(self, video, video_valid, video_offset, frames: int) -> torch.Tensor:
        """Frame conditions [B, frames, D] at the token rate from video [B, T_v, H, W] (through the visual
        front end) or pre-computed features [B, T_v, D] (a model without one); ``video_offset`` [B]: token
        frames between each clip's first video frame and its first token frame."""
        from metis_cli.models.visual import to_token_rate

        feats = self.visual(video, video_valid) if self.cfg.visual else video.to(self.token_emb.weight.dtype)
        lengths = video_valid.sum(dim=1).tolist()
        return torch.stack(
            [to_token_rate(feats[i, : lengths[i]], int(video_offset[i]), frames) for i in range(len(feats))]
        )

    def hidden(
        self,
        tokens,
        masked,
        valid,
        t,
        phones=None,
        phone_valid=None,
        frame_condition=None,
        video=None,
        video_valid=None,
        video_offset=None,
        visual_zero=None,
    ) -> torch.Tensor:
        """Hidden states [B, T, d] of the token positions.

        tokens, masked, valid: [B, T] (masked positions' token values are ignored); t: [B];
        phones, phone_valid: [B, P] text prefix; frame_condition: [B, T, frame_condition_dim];
        video, video_valid, video_offset: lip-to-speech input (see visual_condition) turned into the frame
        condition, zero where ``visual_zero`` [B, T] is true (the prompt).
        """
        if video is not None:
            frame_condition = self.visual_condition(video, video_valid, video_offset, tokens.shape[1])
            if visual_zero is not None:
                frame_condition = frame_condition.masked_fill(visual_zero[..., None], 0.0)
        x = self.embed(tokens, masked, frame_condition)
        if phones is not None:
            if not self.cfg.n_phones:
                raise MetisError("this stage-1 model has no text prefix (n_phones is 0)")
            prefix = self.prefix_mlp(self.phone_emb(phones))
            x = torch.cat([prefix, x], dim=1)
            valid = torch.cat([phone_valid, valid], dim=1)
        h = self.transformer(x, valid, t)
        return h[:, h.shape[1] - tokens.shape[1] :]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)

    def forward(self, tokens, masked, valid, t, with_phone_ctc: bool = False, **conditions):
        """Logits [B, T, vocab_size]; with ``with_phone_ctc`` also the phone CTC head's logits [B, T, n_phones]."""
        hidden = self.hidden(tokens, masked, valid, t, **conditions)
        if with_phone_ctc:
            return self.logits(hidden), self.phone_ctc(hidden)
        return self.logits(hidden)
