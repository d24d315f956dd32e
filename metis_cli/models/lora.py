"""LoRA for the masked generative transformer: low-rank updates of the attention and MLP projections.

``add_lora`` wraps every ``q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj`` of a model in
a ``LoRALinear`` (the frozen base plus ``B @ A`` scaled by alpha / r; B starts at zero, so the wrapped
model computes exactly what it did). ``merge_lora`` folds the updates into plain ``nn.Linear`` layers
for inference. At d=1536 x 16 layers (FFN 6144), r=32 trains 18,087,936 parameters, as published.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.rank, self.scaling = rank, alpha / rank
        self.lora_A = nn.Parameter(
            torch.empty(rank, base.in_features, device=base.weight.device, dtype=base.weight.dtype)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, rank, device=base.weight.device, dtype=base.weight.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain linear layer computing the same function (without dropout)."""
        out = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=self.base.weight.device,
            dtype=self.base.weight.dtype,
        )
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scaling * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _replace(model: nn.Module, make) -> int:
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            new = make(name, child)
            if new is not None:
                setattr(module, name, new)
                count += 1
    return count


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.01, targets=TARGETS) -> int:
    """Wraps the target projections (alpha defaults to 2 * rank, as Metis); returns how many."""
    alpha = 2 * rank if alpha is None else alpha
    return _replace(
        model,
        lambda name, child: (
            LoRALinear(child, rank, alpha, dropout) if name in targets and isinstance(child, nn.Linear) else None
        ),
    )


def merge_lora(model: nn.Module) -> int:
    """Folds every LoRALinear into a plain linear layer; returns how many."""
    return _replace(model, lambda name, child: child.merged() if isinstance(child, LoRALinear) else None)


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if n.endswith(("lora_A", "lora_B"))]
