"""Mask-predict decoding (iterative parallel decoding) for both stages.

Steps i = 0..S-1 with mask time t_i = 1 - i/S; every target position starts masked. At each step the
model predicts every masked position; the top ``ceil(top_k_ratio * V)`` logits are kept and a token is
sampled with Gumbel noise at temperature ``temperature * t_i`` (argmax at the last step); its confidence
is its probability plus ``t_i`` times Gumbel noise, and the ``floor(sin(pi/2 * t_{i+1}) * T)`` least
confident positions are masked again. Unmasked positions never change. A single-step decode (S2A's upper
codebooks) samples with Gumbel noise at temperature 0.2 instead of taking the argmax, as the published decoder does.

Classifier-free guidance acts on hidden states before the output head: ``g_u`` is the model on the
target alone (prompt and text invisible, frame conditions kept), ``g_cfg = g + w (g - g_u)``, rescaled
to the conditional spread, ``out = r * g_cfg * std(g) / std(g_cfg) + (1 - r) * g_cfg``, where std is one
standard deviation over all target positions and channels of each utterance (the published decoder's, which
decodes one utterance at a time; per utterance, batching does not change it).
Both branches run as one batch of 2B rows (``batched_cfg``) or as two passes.

Everything is batched over utterances of different lengths: ``target`` says which positions to generate
in each row, ``valid`` which positions exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from metis_cli.config import check_keys
from metis_cli.errors import MetisError

# hidden_fn(tokens [N, L], masked [N, L], valid [N, L], t [N], rows [N], unconditional [N]) -> [N, L, d]
# ``rows`` maps each row to its utterance (the conditional and unconditional branch share conditions);
# ``unconditional`` rows must drop the text prefix (the prompt is already invisible through ``valid``).
HiddenFn = Callable[..., torch.Tensor]


@dataclass
class MaskPredictSettings:
    steps: int = 25
    cfg_scale: float = 0.0
    cfg_rescale: float = 0.75
    temperature: float = 0.9
    top_k_ratio: float = 0.02

    def __post_init__(self):
        if self.steps < 1:
            raise MetisError(f"mask-predict needs at least 1 step, got {self.steps}")

    @classmethod
    def checked(cls, values: dict, what: str) -> MaskPredictSettings:
        """Settings from ``values`` (a config's or a command line's), refused in one line naming ``what``: an
        unknown key, a value that is not a number, one out of range."""
        check_keys(values, cls, what)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MetisError(f"{what}.{key}: give a number, not {value!r}")
        try:
            return cls(**values)
        except MetisError as e:
            raise MetisError(f"{what}: {e}") from None


ONE_STEP_TEMPERATURE = 0.2  # the published decoder's sampling temperature when a codebook is decoded in one step


def _utterance_std(h: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """[N, L, d] hidden states -> [N, 1, 1]: each row's standard deviation (unbiased, as ``Tensor.std``) over the
    positions ``where`` [N, L] and all channels."""
    h = h.float()
    weight = where[..., None].to(h.dtype)
    n = weight.sum((1, 2)) * h.shape[-1]
    mean = (h * weight).sum((1, 2)) / n.clamp(min=1)
    var = (((h - mean[:, None, None]) ** 2) * weight).sum((1, 2)) / (n - 1).clamp(min=1)
    return var.sqrt()[:, None, None]


def _gumbel(shape, generator, device) -> torch.Tensor:
    """Gumbel noise on ``device``, drawn where the generator lives (decoding seeds a CPU generator, so the
    same seed gives the same noise on a GPU as on the CPU)."""
    u = torch.rand(shape, generator=generator, device=generator.device if generator is not None else device)
    u = u.to(device).clamp(1e-10, 1 - 1e-10)
    return -torch.log(-torch.log(u))


def guided_hidden(
    hidden_fn: HiddenFn, tokens, masked, valid, target, t, settings: MaskPredictSettings, batched_cfg: bool = True
) -> torch.Tensor:
    """Hidden states with classifier-free guidance (none when ``cfg_scale`` is 0)."""
    batch = tokens.shape[0]
    rows = torch.arange(batch, device=tokens.device)
    conditional = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
    if settings.cfg_scale == 0:
        return hidden_fn(tokens, masked, valid, t, rows, conditional)
    uncond_valid = valid & target
    if batched_cfg:
        both = hidden_fn(
            torch.cat([tokens, tokens]),
            torch.cat([masked, masked]),
            torch.cat([valid, uncond_valid]),
            torch.cat([t, t]),
            torch.cat([rows, rows]),
            torch.cat([conditional, ~conditional]),
        )
        g, g_u = both[:batch], both[batch:]
    else:
        g = hidden_fn(tokens, masked, valid, t, rows, conditional)
        g_u = hidden_fn(tokens, masked, uncond_valid, t, rows, ~conditional)
    g_cfg = g + settings.cfg_scale * (g - g_u)
    where = target & valid
    scale = _utterance_std(g, where) / _utterance_std(g_cfg, where).clamp(min=1e-6)
    rescaled = g_cfg * scale.to(g_cfg.dtype)
    return settings.cfg_rescale * rescaled + (1 - settings.cfg_rescale) * g_cfg


@torch.no_grad()
def mask_predict(
    hidden_fn: HiddenFn,
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    settings: MaskPredictSettings,
    generator: torch.Generator | None = None,
    batched_cfg: bool = True,
    return_probs: bool = False,
):
    """Fills ``tokens[target]`` ([B, L] long; the other positions are kept) and returns the new tokens.

    ``return_probs``: also returns ``probs`` [B, L, V], each target position's predicted distribution (the
    model's softmax at temperature 1, over the whole vocabulary, guidance applied) at the step that fixed
    its token; zero elsewhere."""
    tokens = tokens.clone()
    kept = None
    target = target & valid
    masked = target.clone()
    n_target = target.sum(1)
    steps = settings.steps
    for i in range(steps):
        t_i = 1.0 - i / steps
        t = torch.full((tokens.shape[0],), t_i, device=tokens.device)
        hidden = guided_hidden(hidden_fn, tokens, masked, valid, target, t, settings, batched_cfg)
        logits = logits_fn(hidden[masked]).float()
        vocab = logits.shape[-1]
        if return_probs:  # overwritten while a position stays masked: what remains is the step that fixed it
            if kept is None:
                kept = torch.zeros(*tokens.shape, vocab, device=tokens.device)
            kept[masked] = logits.softmax(-1)
        k = max(1, math.ceil(settings.top_k_ratio * vocab))
        threshold = logits.topk(k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
        last = i == steps - 1
        if last and steps == 1:
            sampled = (logits / ONE_STEP_TEMPERATURE + _gumbel(logits.shape, generator, logits.device)).argmax(-1)
        elif last:
            sampled = logits.argmax(-1)
        else:
            temperature = max(settings.temperature * t_i, 1e-3)
            sampled = (logits / temperature + _gumbel(logits.shape, generator, logits.device)).argmax(-1)
        tokens[masked] = sampled
        if last:
            break
        probs = logits.softmax(-1).gather(-1, sampled[:, None])[:, 0]
        confidence = torch.full(tokens.shape, float("inf"), device=tokens.device)
        confidence[masked] = probs + t_i * _gumbel(probs.shape, generator, probs.device)
        n_masked = torch.floor(math.sin(math.pi / 2 * (1.0 - (i + 1) / steps)) * n_target).long()
        ranks = confidence.argsort(dim=1).argsort(dim=1)
        masked = (ranks < n_masked[:, None]) & masked
    return (tokens, kept) if return_probs else tokens
