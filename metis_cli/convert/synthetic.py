"""Random weights in the published (Amphion) layout, at the published sizes or small ones.

The real files cannot be downloaded here, so the converter is checked against folders built with the
published key names and shapes (metis_cli.convert.layouts): ``write_published`` writes one, with the
published folder structure, for tests (``TINY``) and for bench/convert.py (``FULL``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class PublishedSizes:
    stage1_dim: int = 1536
    stage1_layers: int = 16
    ssl_vocab: int = 8192
    phones: int = 1024
    s2a_dim: int = 1024
    s2a_layers: int = 16
    n_codebooks: int = 12
    codebook_size: int = 1024
    ssl_dim: int = 1024
    l2s_dim: int = 768
    lora_ranks: dict = field(default_factory=lambda: {"vc": 16, "se": 32, "tse": 32})
    codec_channels: int = 96
    codec_strides: tuple = (3, 4, 5, 8)
    codec_latent: int = 256
    vocos_dim: int = 512
    vocos_intermediate: int = 4096
    vocos_layers: int = 30
    n_fft: int = 1920
    semantic_dim: int = 384
    semantic_intermediate: int = 2048
    semantic_layers: int = 12
    semantic_codebook: int = 8192


FULL = PublishedSizes()
TINY = PublishedSizes(
    stage1_dim=32,
    stage1_layers=2,
    ssl_vocab=40,
    phones=1024,
    s2a_dim=32,
    s2a_layers=2,
    n_codebooks=4,
    codebook_size=16,
    ssl_dim=24,
    l2s_dim=12,
    lora_ranks={"vc": 4, "se": 8, "tse": 8},
    codec_channels=4,
    codec_strides=(2, 2),
    codec_latent=8,
    vocos_dim=16,
    vocos_intermediate=24,
    vocos_layers=2,
    n_fft=8,
    semantic_dim=16,
    semantic_intermediate=24,
    semantic_layers=2,
    semantic_codebook=32,
)


class _Random:
    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, *shape, scale: float = 0.02) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator) * scale


def _linear(r, out: dict, name: str, fan_in: int, fan_out: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = r(fan_out, fan_in)
    if bias:
        out[f"{name}.bias"] = r(fan_out)


def _transformer(r, out: dict, d: int, layers: int, cond_mlp: bool) -> None:
    for i in range(layers):
        p = f"diff_estimator.layers.{i}."
        for proj in "qkvo":
            _linear(r, out, f"{p}self_attn.{proj}_proj", d, d, bias=False)
        _linear(r, out, f"{p}mlp.gate_proj", d, 4 * d, bias=False)
        _linear(r, out, f"{p}mlp.up_proj", d, 4 * d, bias=False)
        _linear(r, out, f"{p}mlp.down_proj", 4 * d, d, bias=False)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[f"{p}{norm}.to_weight.weight"] = r(d, d)
            out[f"{p}{norm}.to_weight.bias"] = 1 + r(d)
    out["diff_estimator.norm.to_weight.weight"] = r(d, d)
    out["diff_estimator.norm.to_weight.bias"] = 1 + r(d)
    _linear(r, out, "diff_estimator.diff_step_mlp.0", d, 4 * d)
    _linear(r, out, "diff_estimator.diff_step_mlp.2", 4 * d, d)
    if cond_mlp:
        _linear(r, out, "diff_estimator.cond_mlp.0", d, 4 * d)
        _linear(r, out, "diff_estimator.cond_mlp.2", 4 * d, d)


def stage1_state(s: PublishedSizes, seed: int = 0, text: bool = False, adapter: str | None = None) -> dict:
    """adapter: None, "gated" (in_linear, out_linear, gate_scale) or "l2s" (Sequential 0, 2)."""
    r, d, out = _Random(seed), s.stage1_dim, {}
    out["mask_emb.weight"] = r(1, d)
    out["cond_emb.weight"] = r(s.ssl_vocab, d)
    _linear(r, out, "to_logit", d, s.ssl_vocab)
    if text:
        out["phone_emb.weight"] = r(s.phones, d)
        out["phone_emb.weight"][s.phones - 1] = 0
    _transformer(r, out, d, s.stage1_layers, cond_mlp=text)
    if adapter == "gated":
        out.update({f"cond_adapter.{k}": v for k, v in adapter_state(s, seed + 1).items()})
    elif adapter == "l2s":
        _linear(r, out, "cond_adapter.0", s.l2s_dim, 4 * d)
        _linear(r, out, "cond_adapter.2", 4 * d, d)
    return out


def adapter_state(s: PublishedSizes, seed: int = 0) -> dict:
    r, d, out = _Random(seed), s.stage1_dim, {}
    _linear(r, out, "in_linear", s.ssl_dim, 4 * d)
    _linear(r, out, "out_linear", 4 * d, d)
    out["gate_scale"] = torch.tensor([0.5])
    return out


def lora_state(s: PublishedSizes, rank: int, seed: int = 0) -> dict:
    r, d, out = _Random(seed), s.stage1_dim, {}
    shapes = {
        **{f"self_attn.{p}_proj": (d, d) for p in "qkvo"},
        "mlp.gate_proj": (d, 4 * d),
        "mlp.up_proj": (d, 4 * d),
        "mlp.down_proj": (4 * d, d),
    }
    for i in range(s.stage1_layers):
        for name, (fan_in, fan_out) in shapes.items():
            key = f"model.diff_estimator.layers.{i}.{name}"
            out[f"{key}.lora_A.default.weight"] = r(rank, fan_in)
            out[f"{key}.lora_B.default.weight"] = r(fan_out, rank)
    return out


def s2a_state(s: PublishedSizes, n_quantizers: int, seed: int = 0) -> dict:
    r, d, out = _Random(seed), s.s2a_dim, {}
    out["layer_emb.weight"] = r(n_quantizers, d)
    out["mask_emb.weight"] = r(1, d)
    for i in range(n_quantizers):
        out[f"token_emb.{i}.weight"] = r(s.codebook_size, d)
        _linear(r, out, f"to_logits.{i}", d, s.codebook_size)
    out["cond_emb.weight"] = r(s.ssl_vocab, d)
    _transformer(r, out, d, s.s2a_layers, cond_mlp=True)
    out["diff_estimator.embed_tokens.weight"] = torch.zeros(0, 256)
    return out


def _wn_conv(r, out: dict, name: str, fan_in: int, fan_out: int, kernel: int) -> None:
    out[f"{name}.weight_g"] = 1 + r(fan_out, 1, 1).abs()
    out[f"{name}.weight_v"] = r(fan_out, fan_in, kernel, scale=0.1)
    out[f"{name}.bias"] = r(fan_out)


def codec_encoder_state(s: PublishedSizes, seed: int = 0) -> dict:
    r, out = _Random(seed), {}
    c = s.codec_channels
    _wn_conv(r, out, "block.0", 1, c, 7)
    for b, stride in enumerate(s.codec_strides, start=1):
        for u in range(3):
            p = f"block.{b}.block.{u}.block."
            out[f"{p}0.alpha"] = 1 + r(1, c, 1)
            _wn_conv(r, out, f"{p}1", c, c, 7)
            out[f"{p}2.alpha"] = 1 + r(1, c, 1)
            _wn_conv(r, out, f"{p}3", c, c, 1)
        out[f"block.{b}.block.3.alpha"] = 1 + r(1, c, 1)
        _wn_conv(r, out, f"block.{b}.block.4", c, 2 * c, 2 * stride)
        c *= 2
    n = len(s.codec_strides)
    out[f"block.{n + 1}.alpha"] = 1 + r(1, c, 1)
    _wn_conv(r, out, f"block.{n + 2}", c, s.codec_latent, 3)
    return out


def _fvq(r, out: dict, prefix: str, input_dim: int, size: int, dim: int = 8) -> None:
    _wn_conv(r, out, f"{prefix}in_project", input_dim, dim, 1)
    _wn_conv(r, out, f"{prefix}out_project", dim, input_dim, 1)
    out[f"{prefix}codebook.weight"] = r(size, dim, scale=1.0)


def _vocos(r, out: dict, prefix: str, input_dim: int, dim: int, intermediate: int, layers: int) -> None:
    out[f"{prefix}embed.weight"], out[f"{prefix}embed.bias"] = r(dim, input_dim, 7), r(dim)
    out[f"{prefix}norm.weight"], out[f"{prefix}norm.bias"] = 1 + r(dim), r(dim)
    for i in range(layers):
        p = f"{prefix}convnext.{i}."
        out[f"{p}dwconv.weight"], out[f"{p}dwconv.bias"] = r(dim, 1, 7), r(dim)
        out[f"{p}norm.weight"], out[f"{p}norm.bias"] = 1 + r(dim), r(dim)
        _linear(r, out, f"{p}pwconv1", dim, intermediate)
        _linear(r, out, f"{p}pwconv2", intermediate, dim)
        out[f"{p}gamma"] = torch.full((dim,), 1.0 / layers)
    out[f"{prefix}final_layer_norm.weight"], out[f"{prefix}final_layer_norm.bias"] = 1 + r(dim), r(dim)


def codec_decoder_state(s: PublishedSizes, seed: int = 0) -> dict:
    r, out = _Random(seed), {}
    for k in range(s.n_codebooks):
        _fvq(r, out, f"quantizer.quantizers.{k}.", s.codec_latent, s.codebook_size)
    _vocos(r, out, "model.backbone.", s.codec_latent, s.vocos_dim, s.vocos_intermediate, s.vocos_layers)
    _linear(r, out, "model.head.out", s.vocos_dim, s.n_fft + 2)
    out["model.head.istft.window"] = torch.hann_window(s.n_fft)
    return out


def semantic_codec_state(s: PublishedSizes, seed: int = 0) -> dict:
    r, out = _Random(seed), {}
    for part in ("encoder", "decoder"):
        _vocos(r, out, f"{part}.0.", s.ssl_dim, s.semantic_dim, s.semantic_intermediate, s.semantic_layers)
        _linear(r, out, f"{part}.1", s.semantic_dim, s.ssl_dim)
    _fvq(r, out, "quantizer.quantizers.0.", s.ssl_dim, s.semantic_codebook)
    return out


def write_published(root, s: PublishedSizes = TINY, seed: int = 0, parts=None) -> Path:
    """A folder laid out like the published MaskGCT + Metis downloads, with random weights.
    ``parts``: which of PARTS to write (default all)."""
    from safetensors.torch import save_file

    root = Path(root)
    files = {
        "semantic_codec/model.safetensors": lambda: semantic_codec_state(s, seed),
        "acoustic_codec/model.safetensors": lambda: codec_encoder_state(s, seed + 1),
        "acoustic_codec/model_1.safetensors": lambda: codec_decoder_state(s, seed + 2),
        "s2a_model/s2a_model_1layer/model.safetensors": lambda: s2a_state(s, 1, seed + 3),
        "s2a_model/s2a_model_full/model.safetensors": lambda: s2a_state(s, s.n_codebooks, seed + 4),
        "metis_base/model.safetensors": lambda: stage1_state(s, seed + 5),
        "t2s/model.safetensors": lambda: stage1_state(s, seed + 6, text=True),
        "metis_vc/metis_vc.safetensors": lambda: stage1_state(s, seed + 7, adapter="gated"),
        "metis_l2s/metis_l2s.safetensors": lambda: stage1_state(s, seed + 8, adapter="l2s"),
        "metis_omni/metis_omni.safetensors": lambda: stage1_state(s, seed + 9, text=True, adapter="gated"),
        **{
            f"metis_{t}/metis_{t}_lora_{rank}.safetensors": (lambda t=t, rank=rank: lora_state(s, rank, seed + 10))
            for t, rank in s.lora_ranks.items()
            if t != "vc"
        },
        **{
            f"metis_{t}/metis_{t}_lora_{rank}_adapter.safetensors": (
                lambda: {f"model.cond_adapter.{k}": v for k, v in adapter_state(s, seed + 11).items()}
            )
            for t, rank in s.lora_ranks.items()
            if t != "vc"
        },
    }
    for rel, make in files.items():
        if parts is not None and rel.split("/")[0] not in parts:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in make().items()}, str(path))
    if parts is None or "ckpt" in parts:
        (root / "ckpt").mkdir(parents=True, exist_ok=True)
        torch.save(
            {"mean": torch.randn(s.ssl_dim), "var": torch.rand(s.ssl_dim) + 0.5},
            root / "ckpt" / "wav2vec2bert_stats.pt",
        )
    if parts is None or "g2p" in parts:
        (root / "g2p").mkdir(parents=True, exist_ok=True)
        symbols = [
            "_",
            ",",
            ".",
            "h",
            "ə",
            "l",
            "oʊ",
            "w",
            "ɜː",
            "d",
            "ɹ",
            "ɪ",
            "s",
            "t",
            "æ",
            "n",
            "k",
            "iː",
            "m",
            "ɛ",
            "ʌ",
            "z",
            "ð",
            "aɪ",
            "eɪ",
            "b",
            "p",
            "f",
            "v",
            "ŋ",
            "ɡ",
            "uː",
        ]
        (root / "g2p" / "vocab.json").write_text(
            json.dumps({"vocab": {sym: i for i, sym in enumerate(symbols)}}, ensure_ascii=False), encoding="utf-8"
        )
    return root
