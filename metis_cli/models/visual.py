"""The visual front end of lip-to-speech: mouth-crop video (25 fps) -> one feature vector per frame.

A 3D-convolution stem (5 frames x 7 x 7, spatial stride 2, then max-pooling) sees lip motion; a small
2D ResNet reads each frame's shape; temporal convolutions (residual, kernel 5) give context across
frames. Trained jointly with the L2S frame adapter (``metis finetune --task l2s``). Users with their
own visual encoder (AV-HuBERT, a VSR model) give pre-computed features instead (``feats.scp``) and skip it.

Sizes: conf/full 88x88 input, stem 64, ResNet-18 stages 64-128-256-512, 768-d output (the reference's
visual feature size); conf/mini 44x44 (frames area-downsampled), stem 16, stages 16-32-64, 64-d.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from metis_cli.config import check_keys


@dataclass
class VisualConfig:
    input_size: int = 88  # frames are area-resized to input_size x input_size
    stem_channels: int = 64
    channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    blocks_per_stage: int = 2
    out_dim: int = 768
    temporal_layers: int = 2
    temporal_kernel: int = 5

    @classmethod
    def from_dict(cls, d: dict) -> "VisualConfig":
        check_keys(d, cls, "visual front end config")
        return cls(**d)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = _norm(c_out)
        self.skip = (
            None
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out))
        )

    def forward(self, x):
        y = F.silu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.silu(y + (x if self.skip is None else self.skip(x)))


class VisualFrontEnd(nn.Module):
    def __init__(self, cfg: VisualConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Conv3d(1, cfg.stem_channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.GroupNorm(min(8, cfg.stem_channels), cfg.stem_channels),
            nn.SiLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        blocks, c_in = [], cfg.stem_channels
        for i, c_out in enumerate(cfg.channels):
            for j in range(cfg.blocks_per_stage):
                blocks.append(_Block(c_in, c_out, 2 if j == 0 and i > 0 else 1))
                c_in = c_out
        self.resnet = nn.Sequential(*blocks)
        self.proj = nn.Linear(c_in, cfg.out_dim)
        self.temporal = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(cfg.out_dim, cfg.out_dim, cfg.temporal_kernel, padding=cfg.temporal_kernel // 2),
                _norm(cfg.out_dim),
                nn.SiLU(),
            )
            for _ in range(cfg.temporal_layers)
        )

    def forward(self, video: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """video [B, T, H, W] (uint8 or float in 0..255), valid [B, T] -> features [B, T, out_dim].

        Runs in the weights' dtype even under autocast: bf16 3D convolutions have no fast CPU kernel."""
        with torch.autocast(device_type=video.device.type, enabled=False):
            return self._forward(video, valid)

    def _forward(self, video: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        b, t, h, w = video.shape
        x = video.float().div(255.0).sub(0.5)
        if (h, w) != (self.cfg.input_size, self.cfg.input_size):
            x = F.interpolate(x.reshape(b * t, 1, h, w), size=(self.cfg.input_size,) * 2, mode="area").reshape(
                b, t, self.cfg.input_size, -1
            )
        if valid is not None:
            x = x * valid[..., None, None]
        x = x.to(self.proj.weight.dtype)
        x = self.stem(x[:, None])  # [B, C, T, h, w]
        x = x.transpose(1, 2).flatten(0, 1)  # [B*T, C, h, w]
        x = self.resnet(x).mean(dim=(2, 3))
        x = self.proj(x).reshape(b, t, -1).transpose(1, 2)  # [B, D, T]
        for layer in self.temporal:
            x = x + layer(x)
        return x.transpose(1, 2)


def to_token_rate(features: torch.Tensor, offset: int, frames: int) -> torch.Tensor:
    """Visual features [T_v, D] at 25 fps -> [frames, D] at 50 Hz: linear interpolation x2, then the
    token frames ``offset .. offset + frames`` (offset: token frames past the first video frame's start),
    the last frame repeated where the video ends early."""
    up = F.interpolate(features.t()[None], scale_factor=2, mode="linear", align_corners=False)[0].t()
    up = up[offset : offset + frames]
    if len(up) < frames:
        up = (
            torch.cat([up, up[-1:].expand(frames - len(up), -1)])
            if len(up)
            else features.new_zeros(frames, features.shape[1])
        )
    return up
