"""The masking of the training objective, shared by stage 1 and S2A.

Per sample: a mask time t ~ U(0, 1) (clamped to [1e-5, 1]), a mask ratio gamma(t) = sin(pi t / 2)
(optionally floored), and with probability ``prompt_prob`` an unmasked prefix of the utterance (the
prompt, length uniform in [min(T // 4, 5), max_prompt_ratio * T]). Without a prompt the model learns the
unconditional case that classifier-free guidance needs. Every non-prompt token is masked i.i.d. with
probability gamma, and at least one is masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metis_cli.config import check_keys


def mask_ratio(t: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    return torch.sin(t * math.pi / 2).clamp(min=floor)


@dataclass
class MaskingConfig:
    prompt_prob: float = 0.85
    max_prompt_ratio: float = 0.4
    mask_ratio_floor: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "MaskingConfig":
        check_keys(d, cls, "masking config")
        return cls(**d)


def prompt_length(length: int, max_ratio: float, generator: torch.Generator) -> int:
    low = min(length // 4, 5)
    high = max(low, int(max_ratio * length))
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def sample_masks(lengths: torch.Tensor, cfg: MaskingConfig, generator: torch.Generator):
    """For a batch of utterance lengths [B]: (t [B], prompt_lengths [B], masked [B, T_max] bool).

    ``masked`` is False on prompts and padding; every utterance has at least one masked position.
    """
    batch, t_max = len(lengths), int(lengths.max())
    t = torch.rand(batch, generator=generator).clamp(1e-5, 1.0)
    gamma = mask_ratio(t, cfg.mask_ratio_floor)
    prompts = torch.zeros(batch, dtype=torch.long)
    masked = torch.zeros(batch, t_max, dtype=torch.bool)
    for i, length in enumerate(lengths.tolist()):
        has_prompt = float(torch.rand(1, generator=generator)) < cfg.prompt_prob
        prompt = prompt_length(length, cfg.max_prompt_ratio, generator) if has_prompt else 0
        prompt = min(prompt, length - 1)
        draws = torch.rand(length - prompt, generator=generator) < gamma[i]
        if not draws.any():
            draws[int(torch.randint(0, length - prompt, (1,), generator=generator))] = True
        masked[i, prompt:length] = draws
        prompts[i] = prompt
    return t, prompts, masked
