"""The masked generative transformer that both Metis stages share.

Llama-style blocks (RMSNorm, SwiGLU, rotary positions, no biases) with *bidirectional* attention over a
key-padding mask, and adaptive RMSNorm: every norm's scale is a linear function of the embedding of the
mask time t, so one network serves every masking level.

Positions count valid (non-padded) entries only, so a sequence gives the same outputs whether it is
padded at the end, or has padding between its parts (a text prefix padded to the batch's longest, then
the audio tokens): padding is invisible to attention and to the rotary positions alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metis_cli.config import check_keys
from metis_cli.errors import MetisError


@dataclass
class TransformerConfig:
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    ffn_dim: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    # Dropout on each block's attention and feed-forward outputs (training only). 0 in the published
    # models; the mini S2A, which sees 33 min of speech, overfits without it.
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        check_keys(d, cls, "transformer config")
        cfg = cls(**d)
        if not 0 <= cfg.dropout < 1:
            raise MetisError(f"transformer config: dropout {cfg.dropout} is not in [0, 1)")
        if cfg.dim % cfg.n_heads or (cfg.dim // cfg.n_heads) % 2:
            raise MetisError(f"transformer config: dim {cfg.dim} must split into {cfg.n_heads} heads of even size")
        return cfg


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the mask time t in [0, 1] (shape [B] -> [B, dim]), as the published models
    compute it: ``[sin(w_i t), cos(w_i t)]`` with w_i = 10000^(-i/(dim/2 - 1)) for i < dim/2. (A variant of
    ours with t scaled by 1000 was measured equal on the mini S2A and removed: docs/world_codec.md.)"""
    half = dim // 2
    steps = torch.arange(half, device=t.device, dtype=torch.float32)
    angles = t.float()[:, None] * torch.exp(-math.log(10000.0) * steps / (half - 1))[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class AdaptiveRMSNorm(nn.Module):
    """RMSNorm whose per-channel scale is ``Linear(c)``; starts as a plain RMSNorm (scale 1)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.to_weight = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_weight.weight)
        nn.init.ones_(self.to_weight.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.to_weight(c)[:, None, :]


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float):
    """cos/sin tables [B, 1, L, head_dim] for integer positions [B, L]."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.dim // cfg.n_heads
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, attn_mask):
        b, length, _ = x.shape

        def heads(t):
            return t.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)

        q = apply_rotary(heads(self.q_proj(x)), cos, sin)
        k = apply_rotary(heads(self.k_proj(x)), cos, sin)
        out = F.scaled_dot_product_attention(q, k, heads(self.v_proj(x)), attn_mask=attn_mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, length, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.input_layernorm = AdaptiveRMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = AdaptiveRMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, c, cos, sin, attn_mask):
        x = x + self.dropout(self.self_attn(self.input_layernorm(x, c), cos, sin, attn_mask))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x, c)))


class MaskedTransformer(nn.Module):
    """Embedded sequence [B, L, d] + validity mask [B, L] + mask time t [B] -> hidden states [B, L, d]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.time_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = AdaptiveRMSNorm(d, cfg.norm_eps)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, valid: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.time_mlp(timestep_embedding(t, self.cfg.dim).to(x.dtype))
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = rotary_tables(positions, self.cfg.dim // self.cfg.n_heads, self.cfg.rope_theta)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        attn_mask = valid[:, None, None, :]
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, c, cos, sin, attn_mask, use_reentrant=False)
            else:
                x = layer(x, c, cos, sin, attn_mask)
        return self.norm(x, c)


ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU}


def mlp(dim: int, hidden: int, out: int | None = None, activation: str = "gelu") -> nn.Sequential:
    """``Linear -> activation -> Linear`` (keys ``0.*`` and ``2.*``); activation "gelu" or "silu"."""
    if activation not in ACTIVATIONS:
        raise MetisError(f"unknown activation '{activation}'; choose from {', '.join(ACTIVATIONS)}")
    return nn.Sequential(nn.Linear(dim, hidden), ACTIVATIONS[activation](), nn.Linear(hidden, out or dim))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
