"""Published Amphion (MaskGCT / Metis) weights -> this toolkit's models.

One function per layout (metis_cli.convert.layouts) turns a published state dict into this toolkit's
model config and state dict; ``load_converted`` builds the model and loads it strictly, so a shape that
does not fit is reported by key before anything is written. Sizes come from the tensors' shapes; what
shapes cannot tell (attention heads, the codec's sample rate) comes from the published configs
(``PUBLISHED``), overridable by the caller.

What the published models compute that this toolkit's defaults do not, and how the configs say so:
SiLU in the condition MLPs
(``prefix_activation`` / ``condition_activation: silu``), and, in the model of codebooks 1..11, one mask
embedding per higher codebook on generated frames (``mask_higher_codebooks``). The published codebook-0
model embeds codebook 0 only (1 quantizer); it becomes a 12-codebook model whose embeddings of codebooks
1..11 are zero, which computes the same function.
"""

from __future__ import annotations

import re

import torch

from metis_cli.errors import MetisError

PUBLISHED = {"n_heads": 16, "codec_sample_rate": 24000, "codec_dilations": [1, 3, 9], "n_codebooks": 12}
# LoRA rank of the published fine-tuned models (REFERENCE.md); their alpha is 2 r.
PUBLISHED_LORA_RANK = {"vc": 16, "se": 32, "tse": 32}


def _take(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _renamed(key: str, prefixes: dict[str, str]) -> str:
    """``key`` with the first matching old prefix of ``prefixes`` replaced by its new one."""
    for old, new in prefixes.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _layers(state: dict, prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if found != set(range(len(found))):
        raise MetisError(f"layers under '{prefix}' are not numbered 0..{len(found) - 1}: {sorted(found)}")
    return len(found)


def _transformer(state: dict, n_heads: int) -> tuple[dict, dict]:
    """diff_estimator.* -> transformer.* (block names are the same), and the transformer config."""
    out = {}
    for key, value in _take(state, "diff_estimator.").items():
        if key.startswith("layers.") or key.startswith("norm."):
            out[f"transformer.{key}"] = value
        elif key.startswith("diff_step_mlp."):
            out[f"transformer.time_mlp.{key.removeprefix('diff_step_mlp.')}"] = value
    dim = state["diff_estimator.norm.to_weight.weight"].shape[0]
    config = {
        "dim": int(dim),
        "n_layers": _layers(state, "diff_estimator.layers."),
        "n_heads": n_heads,
        "ffn_dim": int(state["diff_estimator.layers.0.mlp.gate_proj.weight"].shape[0]),
    }
    return config, out


def convert_stage1(state: dict, n_heads: int = PUBLISHED["n_heads"]) -> tuple[dict, dict]:
    """A published stage-1 model (base, text prefix, frame adapter: gated, or the L2S MLP) -> Stage1Model."""
    transformer, out = _transformer(state, n_heads)
    out["token_emb.weight"] = state["cond_emb.weight"]
    out["mask_emb"] = state["mask_emb.weight"]
    out["head.weight"], out["head.bias"] = state["to_logit.weight"], state["to_logit.bias"]
    config = {
        "vocab_size": int(state["cond_emb.weight"].shape[0]),
        "transformer": transformer,
        "n_phones": 0,
        "frame_condition_dim": 0,
        "prefix_activation": "silu",
    }
    if "phone_emb.weight" in state:
        out["phone_emb.weight"] = state["phone_emb.weight"]
        config["n_phones"] = int(state["phone_emb.weight"].shape[0])
        for key, value in _take(state, "diff_estimator.cond_mlp.").items():
            out[f"prefix_mlp.{key}"] = value
    elif any(k.startswith("diff_estimator.cond_mlp.") for k in state):
        raise MetisError("a stage-1 model with a text-prefix MLP (diff_estimator.cond_mlp) but no phone_emb.weight")
    adapter = _take(state, "cond_adapter.")
    if adapter:
        config.update(_adapter(adapter, out))
    return config, out


def _adapter(adapter: dict, out: dict) -> dict:
    """cond_adapter.* (gated: in_linear, out_linear, gate_scale; L2S: Sequential 0, 2) -> frame_adapter.*"""
    for key, value in adapter.items():
        out[f"frame_adapter.{_renamed(key, {'0.': 'in_linear.', '2.': 'out_linear.'})}"] = value
    return {
        "frame_condition_dim": int(out["frame_adapter.in_linear.weight"].shape[1]),
        "adapter_gate": "gate_scale" in adapter,
    }


def merge_adapter(state: dict, adapter_file_state: dict) -> dict:
    """The base stage-1 state plus a published adapter file (keys ``model.cond_adapter.*``)."""
    return {**state, **{k.removeprefix("model."): v for k, v in adapter_file_state.items()}}


def merge_lora(
    state: dict, lora_state: dict, rank: int | None = None, alpha: float | None = None, where: str = "LoRA file"
) -> dict:
    """Folds a published LoRA file (``model.<module>.lora_A.default.weight`` [r, in], ``lora_B`` [out, r])
    into the base weights: W + alpha / r * B @ A. ``rank``: what the model's config says (checked)."""
    pairs: dict[str, dict] = {}
    for key, value in lora_state.items():
        m = re.fullmatch(r"model\.(.+)\.lora_([AB])\.default\.weight", key)
        if not m:
            raise MetisError(f"{where}: unexpected key {key}")
        pairs.setdefault(m.group(1), {})[m.group(2)] = value
    ranks = {int(p["A"].shape[0]) for p in pairs.values() if "A" in p}
    if len(ranks) != 1:
        raise MetisError(f"{where}: LoRA ranks differ between layers: {sorted(ranks)}")
    found = ranks.pop()
    if rank is not None and found != rank:
        raise MetisError(f"{where}: LoRA rank {found}, but the model's config says rank {rank}")
    scaling = (2 * found if alpha is None else alpha) / found
    merged = dict(state)
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise MetisError(f"{where}: {module} has lora_{'A' if 'A' in pair else 'B'} without its partner")
        base_key = f"{module}.weight"
        if base_key not in merged:
            raise MetisError(f"{where}: {module} is not a layer of the base model")
        a, b, w = pair["A"].float(), pair["B"].float(), merged[base_key]
        if b.shape[1] != found or (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise MetisError(
                f"{where}: {module}: lora_B {tuple(b.shape)} @ lora_A {tuple(a.shape)} does not fit the weight "
                f"{tuple(w.shape)}"
            )
        merged[base_key] = (w.float() + scaling * b @ a).to(w.dtype)
    return merged


def convert_s2a(
    state: dict, n_heads: int = PUBLISHED["n_heads"], n_codebooks: int = PUBLISHED["n_codebooks"]
) -> tuple[dict, dict]:
    """A published S2A model -> S2AModel. One quantizer: the codebook-0 model (codebooks 1.. embedded as
    zeros, which it never saw); n quantizers: the model of codebooks 1..n-1 (its untrained head 0 dropped)."""
    transformer, out = _transformer(state, n_heads)
    n_q = _layers(state, "token_emb.")
    dim = transformer["dim"]
    codebook_size = int(state["token_emb.0.weight"].shape[0])
    out["mask_emb"] = state["mask_emb.weight"]
    out["ssl_emb.weight"] = state["cond_emb.weight"]
    for key, value in _take(state, "diff_estimator.cond_mlp.").items():
        out[f"cond_mlp.{key}"] = value
    if n_q == 1:
        predict, total = (0, 1), n_codebooks
    else:
        predict, total = (1, n_q), n_q
    layer_emb = torch.zeros(total, dim, dtype=state["layer_emb.weight"].dtype)
    layer_emb[:n_q] = state["layer_emb.weight"]
    out["layer_emb.weight"] = layer_emb
    for j in range(total):
        out[f"code_emb.{j}.weight"] = (
            state[f"token_emb.{j}.weight"] if j < n_q else torch.zeros(codebook_size, dim, dtype=layer_emb.dtype)
        )
    for j in range(*predict):
        out[f"heads.{j - predict[0]}.weight"] = state[f"to_logits.{j}.weight"]
        out[f"heads.{j - predict[0]}.bias"] = state[f"to_logits.{j}.bias"]
    config = {
        "ssl_vocab_size": int(state["cond_emb.weight"].shape[0]),
        "n_codebooks": total,
        "codebook_size": codebook_size,
        "predict_codebooks": list(predict),
        "transformer": transformer,
        "condition_activation": "silu",
        "mask_higher_codebooks": n_q > 1,
    }
    return config, out


def _weight_norm(src: dict, prefix: str, dst_prefix: str, out: dict) -> None:
    out[f"{dst_prefix}parametrizations.weight.original0"] = src[f"{prefix}weight_g"]
    out[f"{dst_prefix}parametrizations.weight.original1"] = src[f"{prefix}weight_v"]
    if f"{prefix}bias" in src:
        out[f"{dst_prefix}bias"] = src[f"{prefix}bias"]


def _fvq(state: dict, prefix: str, dst: str, out: dict) -> tuple[int, int]:
    _weight_norm(state, f"{prefix}in_project.", f"{dst}in_proj.", out)
    _weight_norm(state, f"{prefix}out_project.", f"{dst}out_proj.", out)
    codebook = state[f"{prefix}codebook.weight"]
    out[f"{dst}codebook.weight"] = codebook
    out[f"{dst}usage"] = torch.full((codebook.shape[0],), 1.0 / codebook.shape[0])
    out[f"{dst}calls"] = torch.zeros((), dtype=torch.long)
    return int(codebook.shape[0]), int(codebook.shape[1])


def _convnext(state: dict, prefix: str, dst: str, out: dict) -> dict:
    """A published VocosBackbone (embed, norm, convnext.N, final_layer_norm) -> ConvNeXtBackbone keys."""
    for key, value in _take(state, prefix).items():
        out[dst + _renamed(key, {"final_layer_norm.": "final_norm.", "convnext.": "blocks."})] = value
    embed = state[f"{prefix}embed.weight"]
    return {
        "dim": int(embed.shape[0]),
        "input_dim": int(embed.shape[1]),
        "n_layers": _layers(state, f"{prefix}convnext."),
        "intermediate_dim": int(state[f"{prefix}convnext.0.pwconv1.weight"].shape[0]),
    }


def convert_codec(
    encoder: dict,
    decoder: dict,
    sample_rate: int = PUBLISHED["codec_sample_rate"],
    dilations=PUBLISHED["codec_dilations"],
) -> tuple[dict, dict]:
    """The published acoustic codec encoder + decoder files -> Codec."""
    out: dict = {}
    n_blocks = _layers(encoder, "block.") - 3  # conv, blocks..., snake, conv
    if n_blocks < 1:
        raise MetisError("acoustic codec encoder: no encoder blocks")
    parametrized = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    for key, value in encoder.items():  # block.* -> encoder.net.* (same nesting), weight norm renamed
        head, _, leaf = key.rpartition(".")
        out[f"encoder.net.{head.removeprefix('block.')}.{parametrized.get(leaf, leaf)}"] = value
    strides = [
        int(encoder[f"block.{i}.block.{len(dilations) + 1}.weight_v"].shape[-1]) // 2 for i in range(1, n_blocks + 1)
    ]
    channels = int(encoder["block.0.weight_v"].shape[0])
    latent_dim = int(encoder[f"block.{n_blocks + 2}.weight_v"].shape[0])
    n_q = _layers(decoder, "quantizer.quantizers.")
    for k in range(n_q):
        codebook_size, codebook_dim = _fvq(decoder, f"quantizer.quantizers.{k}.", f"quantizer.layers.{k}.", out)
    backbone = _convnext(decoder, "model.backbone.", "decoder.", out)
    out["decoder.head.out.weight"], out["decoder.head.out.bias"] = (
        decoder["model.head.out.weight"],
        decoder["model.head.out.bias"],
    )
    n_fft = int(decoder["model.head.out.weight"].shape[0]) - 2
    window = decoder.get("model.head.istft.window")
    if window is not None and tuple(window.shape) != (n_fft,):
        raise MetisError(
            f"acoustic codec decoder: istft window of {tuple(window.shape)} samples for an output layer of n_fft "
            f"{n_fft}"
        )
    if backbone["input_dim"] != latent_dim:
        raise MetisError(
            f"acoustic codec: the encoder gives {latent_dim}-d latents, the decoder takes {backbone['input_dim']}"
        )
    config = {
        "sample_rate": sample_rate,
        "encoder": {"channels": channels, "strides": strides, "dilations": list(dilations), "latent_dim": latent_dim},
        "quantizer": {"n_codebooks": n_q, "codebook_size": codebook_size, "codebook_dim": codebook_dim},
        "decoder": {
            "dim": backbone["dim"],
            "intermediate_dim": backbone["intermediate_dim"],
            "n_layers": backbone["n_layers"],
            "n_fft": n_fft,
        },
    }
    return config, out


def convert_semantic_codec(state: dict) -> tuple[dict, dict]:
    """The published semantic codec -> VQTokenizerModel (metis_cli.tokenizer.vq)."""
    out: dict = {}
    sizes = {}
    for part in ("encoder", "decoder"):
        sizes[part] = _convnext(state, f"{part}.0.", f"{part}.backbone.", out)
        out[f"{part}.proj.weight"], out[f"{part}.proj.bias"] = state[f"{part}.1.weight"], state[f"{part}.1.bias"]
    if _layers(state, "quantizer.quantizers.") != 1:
        raise MetisError("semantic codec: the VQ tokenizer has one quantizer")
    codebook_size, codebook_dim = _fvq(state, "quantizer.quantizers.0.", "quantizer.", out)
    enc = sizes["encoder"]
    config = {
        "input_dim": enc["input_dim"],
        "dim": enc["dim"],
        "intermediate_dim": enc["intermediate_dim"],
        "n_layers": enc["n_layers"],
        "codebook_size": codebook_size,
        "codebook_dim": codebook_dim,
    }
    return config, out


def load_converted(model: torch.nn.Module, state: dict, where: str) -> torch.nn.Module:
    """Loads ``state`` into ``model`` strictly; a missing, unexpected or misshapen key is a MetisError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        lines = [f"{where}: does not fit the converted model"]
        for label, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)):
            if items:
                lines.append(f"  {label} ({len(items)}): " + "; ".join(items[:6]) + (" ..." if len(items) > 6 else ""))
        raise MetisError("\n".join(lines))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model
