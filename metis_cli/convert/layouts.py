"""The published (Amphion) checkpoint layouts and how their keys map onto this toolkit's models.

Each ``Layout`` names the key patterns a published file must hold (``required``) and may hold
(``optional``); ``detect_layout`` picks the layout a state dict matches exactly, or reports the nearest
one with its missing and unexpected keys. Key facts (names and shapes) are those of the published
MaskGCT and Metis files; RoPE inverse frequencies are not stored there, and an empty
``diff_estimator.embed_tokens.weight`` [0, d] is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from metis_cli.errors import MetisError

N = r"\d+"
BLOCK = (
    rf"diff_estimator\.layers\.{N}\.(self_attn\.[qkvo]_proj\.weight|mlp\.(gate|up|down)_proj\.weight|"
    r"(input|post_attention)_layernorm\.to_weight\.(weight|bias))"
)
TRANSFORMER = [
    BLOCK,
    r"diff_estimator\.norm\.to_weight\.(weight|bias)",
    r"diff_estimator\.diff_step_mlp\.[02]\.(weight|bias)",
]
IGNORED = [
    r"diff_estimator\.embed_tokens\.weight",
    r"diff_estimator\.rotary_emb\.inv_freq",
    rf"diff_estimator\.layers\.{N}\.self_attn\.rotary_emb\.inv_freq",
]
WN = r"(weight_g|weight_v|bias)"  # an old-style weight-normed convolution
CONVNEXT = (
    rf"(embed\.(weight|bias)|norm\.(weight|bias)|convnext\.{N}\.(dwconv|norm|pwconv1|pwconv2)\.(weight|bias)"
    rf"|convnext\.{N}\.gamma|final_layer_norm\.(weight|bias))"
)
FVQ = rf"quantizer\.quantizers\.{N}\.((in_project|out_project)\.{WN}|codebook\.weight)"
LORA = (
    rf"model\.diff_estimator\.layers\.{N}\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
    r"\.lora_[AB]\.default\.weight"
)


def readable(pattern: str) -> str:
    """A key pattern as a person reads it: ``layers.N.mlp.(gate|up|down)_proj.weight``."""
    return pattern.replace(r"\d+", "N").replace("\\.", ".")


@dataclass
class Layout:
    name: str
    what: str
    required: list[str]
    optional: list[str] = field(default_factory=list)

    def compare(self, keys) -> tuple[list[str], list[str]]:
        """Required patterns no key matches, and keys no pattern matches."""
        required = [re.compile(p) for p in self.required]
        allowed = required + [re.compile(p) for p in self.optional + IGNORED]
        missing = [readable(p.pattern) for p in required if not any(p.fullmatch(k) for k in keys)]
        unexpected = [k for k in keys if not any(p.fullmatch(k) for p in allowed)]
        return missing, unexpected


LAYOUTS = [
    Layout(
        "stage1",
        "stage-1 model (Metis base, or a fine-tuned task model)",
        [r"mask_emb\.weight", r"cond_emb\.weight", r"to_logit\.(weight|bias)", *TRANSFORMER],
        [
            r"phone_emb\.weight",
            r"diff_estimator\.cond_mlp\.[02]\.(weight|bias)",
            r"cond_adapter\.(in_linear|out_linear)\.(weight|bias)",
            r"cond_adapter\.gate_scale",
            r"cond_adapter\.[02]\.(weight|bias)",
        ],
    ),
    Layout(
        "s2a",
        "S2A model (acoustic tokens given SSL tokens)",
        [
            r"layer_emb\.weight",
            r"mask_emb\.weight",
            rf"token_emb\.{N}\.weight",
            rf"to_logits\.{N}\.(weight|bias)",
            r"cond_emb\.weight",
            r"diff_estimator\.cond_mlp\.[02]\.(weight|bias)",
            *TRANSFORMER,
        ],
    ),
    Layout(
        "acoustic_encoder",
        "acoustic codec encoder",
        [
            rf"block\.0\.{WN}",
            rf"block\.{N}\.block\.{N}\.block\.{N}\.alpha",
            rf"block\.{N}\.block\.{N}\.block\.{N}\.{WN}",
            rf"block\.{N}\.block\.{N}\.alpha",
            rf"block\.{N}\.block\.{N}\.{WN}",
            rf"block\.{N}\.alpha",
            rf"block\.{N}\.{WN}",
        ],
    ),
    Layout(
        "acoustic_decoder",
        "acoustic codec decoder (quantizer + Vocos)",
        [FVQ, rf"model\.backbone\.{CONVNEXT}", r"model\.head\.out\.(weight|bias)"],
        [r"model\.head\.istft\.window"],
    ),
    Layout(
        "semantic_codec",
        "semantic codec (the VQ SSL tokenizer)",
        [
            rf"encoder\.0\.{CONVNEXT}",
            r"encoder\.1\.(weight|bias)",
            rf"decoder\.0\.{CONVNEXT}",
            r"decoder\.1\.(weight|bias)",
            FVQ,
        ],
    ),
    Layout("lora", "LoRA file of a fine-tuned stage-1 model", [LORA]),
    Layout(
        "adapter",
        "adapter file of a fine-tuned stage-1 model",
        [r"model\.cond_adapter\.(in_linear|out_linear)\.(weight|bias)"],
        [r"model\.cond_adapter\.gate_scale"],
    ),
]


def detect_layout(keys, where: str) -> Layout:
    """The layout whose patterns ``keys`` match exactly; otherwise a MetisError naming the nearest layout
    with its missing patterns and unexpected keys."""
    keys = list(keys)
    if not keys:
        raise MetisError(f"{where}: holds no tensors")
    scored = []
    for layout in LAYOUTS:
        missing, unexpected = layout.compare(keys)
        if not missing and not unexpected:
            return layout
        matched = len(keys) - len(unexpected)
        scored.append((-matched, len(missing), layout, missing, unexpected))
    _, _, nearest, missing, unexpected = min(scored, key=lambda s: s[:2])
    lines = [f"{where}: the keys match no known published layout; nearest: {nearest.name} ({nearest.what})"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        lines.append(
            f"  unexpected ({len(unexpected)}): "
            + ", ".join(sorted(unexpected)[:8])
            + (" ..." if len(unexpected) > 8 else "")
        )
    raise MetisError("\n".join(lines))
