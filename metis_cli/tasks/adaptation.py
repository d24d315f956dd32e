"""How a pre-trained stage-1 model is adapted to a task (config section ``adaptation``).

- ``lora``: the backbone is frozen; low-rank updates of q/k/v/o/gate/up/down in every layer train
  (``rank``, ``alpha`` = 2 * rank by default, ``dropout``), merged into the weights for inference.
- ``full``: every weight trains.
- ``adapter``: the backbone is frozen; only the condition modules train.

The condition modules (text prefix: phone embedding + MLP; frame adapter) are new, so they train in
every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from metis_cli.config import check_keys
from metis_cli.errors import MetisError
from metis_cli.models.lora import add_lora, lora_parameters, merge_lora

MODES = ("lora", "full", "adapter")
CONDITION_MODULES = ("phone_emb", "prefix_mlp", "phone_ctc", "frame_adapter", "visual")


@dataclass
class AdaptationConfig:
    mode: str = "lora"
    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.01

    @classmethod
    def from_dict(cls, d: dict) -> "AdaptationConfig":
        check_keys(d, cls, "adaptation config")
        cfg = cls(**d)
        if cfg.mode not in MODES:
            raise MetisError(f"adaptation.mode '{cfg.mode}' is not one of {', '.join(MODES)}")
        if cfg.mode == "lora" and cfg.rank < 1:
            raise MetisError(f"adaptation.rank must be at least 1, got {cfg.rank}")
        return cfg


def _count(params) -> int:
    return sum(p.numel() for p in params)


def adapt(model: nn.Module, cfg: AdaptationConfig) -> dict[str, int]:
    """Adds LoRA where asked and sets ``requires_grad``; returns the parameter counts
    (``trainable``, ``lora``, ``condition``, ``total``)."""
    if cfg.mode == "lora":
        add_lora(model.transformer, cfg.rank, cfg.alpha, cfg.dropout)
    for name, p in model.named_parameters():
        is_condition = name.split(".")[0] in CONDITION_MODULES
        is_lora = name.endswith(("lora_A", "lora_B"))
        p.requires_grad_(cfg.mode == "full" or is_condition or is_lora)
    condition = [p for n, p in model.named_parameters() if n.split(".")[0] in CONDITION_MODULES]
    return {
        "trainable": _count(p for p in model.parameters() if p.requires_grad),
        "lora": _count(lora_parameters(model)),
        "condition": _count(condition),
        "total": _count(model.parameters()),
    }


def for_inference(model: nn.Module, cfg: AdaptationConfig) -> nn.Module:
    """The structure a checkpoint of this adaptation was saved with (LoRA wrappers), to load it into;
    ``merged`` afterwards folds LoRA into plain weights."""
    if cfg.mode == "lora":
        add_lora(model.transformer, cfg.rank, cfg.alpha, 0.0)
    return model


def merged(model: nn.Module) -> nn.Module:
    merge_lora(model)
    return model
