"""Generation with the masked generative models: SSL tokens with stage 1, codec codes with S2A.

Both take lists of utterances of different lengths and decode them as one padded batch: each row is
``[prompt ; target ; padding]``.
"""

from __future__ import annotations

import logging

import torch

from metis_cli.checkpoint import load_weights, weights_name
from metis_cli.config import read_exp_config
from metis_cli.errors import MetisError
from metis_cli.infer.mask_predict import MaskPredictSettings, mask_predict
from metis_cli.models.s2a import S2AConfig, S2AModel, S2AVectorModel, build_s2a
from metis_cli.models.stage1 import Stage1Config, Stage1Model

logger = logging.getLogger(__name__)

# Reference defaults (Metis/MaskGCT) of S2A, per codebook: the lists are cut or extended (with their last
# value) to the number of codebooks. Stage 1's are each task's, in the task registry.
S2A_DEFAULTS = {"steps": [40, 16, 1], "cfg_scale": [0.0, 2.5], "temperature": [1.5]}
# What the codec decodes from S2A: "codes" (the codes S2A picks; as published), "expected" (the expected
# codebook vector under S2A's predicted distributions; codecs with ``decode_expected``, i.e. the WORLD codec),
# "auto" (expected where the codec can, else codes). Measured on the WORLD codec (docs/world_codec.md): S2A
# resynthesis STOI 0.62 from codes, 0.75 from the expected vector.
# An S2A of output 'vector' (WORLD codec) gives the codec's vector itself ("vector" in decode.json).
CODEC_INPUTS = ("auto", "codes", "expected")


def load_stage1(exp_dir, device: str = "cpu", checkpoint=None) -> Stage1Model:
    """The stage-1 model of an experiment dir (its EMA weights when it kept an EMA)."""
    config = read_exp_config(exp_dir)
    model = Stage1Model(Stage1Config.from_dict(config["model"]))
    load_weights(
        exp_dir, weights_name(config, "stage1"), model, checkpoint, device, what="stage-1 model (`metis pretrain`)"
    )
    return model.to(device).eval()


def load_s2a(exp_dirs, device: str = "cpu") -> list[S2AModel] | list[S2AVectorModel]:
    """The S2A models of one or more experiment dirs, ordered by codebook; together they must predict
    every codebook exactly once (one model for all, or the reference's codebook 0 + codebooks 1..), or one
    model of output 'vector'."""
    models = []
    for exp_dir in exp_dirs:
        config = read_exp_config(exp_dir)
        model = build_s2a(S2AConfig.from_dict(config["model"]))
        load_weights(exp_dir, weights_name(config, "s2a"), model, None, device, what="S2A model (`metis train-s2a`)")
        models.append(model.to(device).eval())
    if any(m.cfg.output == "vector" for m in models):
        if len(models) > 1:
            raise MetisError(
                f"the S2A models {', '.join(map(str, exp_dirs))}: a model of output 'vector' predicts every frame's "
                "whole vector alone; give it alone"
            )
        return models
    models.sort(key=lambda m: m.cfg.predict_codebooks[0])
    n_codebooks = models[0].cfg.n_codebooks
    covered = [j for model in models for j in model.cfg.codebooks]
    if covered != list(range(n_codebooks)):
        raise MetisError(
            f"the S2A models {', '.join(map(str, exp_dirs))} predict codebooks {covered}; "
            f"together they must cover 0..{n_codebooks - 1} once"
        )
    return models


def per_codebook_settings(n_codebooks: int, overrides: dict | None = None) -> list[MaskPredictSettings]:
    values = {**S2A_DEFAULTS, **(overrides or {})}

    def pick(key, j):
        v = values.get(key)
        if not isinstance(v, (list, tuple)):
            return v
        return v[min(j, len(v) - 1)]

    return [
        MaskPredictSettings.checked({k: pick(k, j) for k in values}, "S2A decode settings") for j in range(n_codebooks)
    ]


def s2a_settings_for(models, overrides: dict | None = None) -> list[MaskPredictSettings]:
    """The per-codebook decoding settings of these S2A models (``per_codebook_settings``); none for an S2A of
    output 'vector', which predicts in one forward pass without mask-predict (settings given to it are unused,
    and the log says so)."""
    if models[0].cfg.output == "vector":
        if overrides:
            logger.warning(
                "S2A settings %s unused: this S2A regresses the codec's vector in one forward pass", overrides
            )
        return []
    return per_codebook_settings(models[0].cfg.n_codebooks, overrides)


def checkpoints_of(**models) -> dict:
    """For decode.json: each model's checkpoint (path, weights file, step), as ``load_weights`` recorded it."""

    def info(m):
        return [info(x) for x in m] if isinstance(m, (list, tuple)) else getattr(m, "checkpoint_info", None)

    return {name: info(m) for name, m in models.items() if m is not None}


def resolve_codec_input(codec, codec_input: str, models=None) -> str:
    """``codec_input`` (one of CODEC_INPUTS) for this codec and these S2A ``models``: "codes" or "expected",
    or "vector" for an S2A of output 'vector' (which picks no codes: "codes" is refused)."""
    vector_model = bool(models) and models[0].cfg.output == "vector"
    if codec_input not in CODEC_INPUTS and not (vector_model and codec_input == "vector"):
        raise MetisError(f"unknown codec input '{codec_input}': choose {', '.join(CODEC_INPUTS)}")
    if vector_model:
        if not hasattr(codec, "decode_vectors"):
            raise MetisError(
                "this S2A regresses the WORLD codec's vector; the codec is of kind "
                f"{getattr(codec, 'kind', 'neural')}: give the codec its codes came from"
            )
        if codec_input == "codes":
            raise MetisError("this S2A regresses the codec's vector and picks no codes: use --codec-input auto")
        ours, theirs = models[0].codebooks.float().cpu(), codec.codebooks.float().cpu()
        # rtol: the model's copy may be held in bf16 (--bf16), 3 significant digits
        if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=1e-2, atol=1e-3):
            raise MetisError(
                "the S2A model was trained on the codes of another codec (its copy of the codebooks differs): give "
                "the codec its codes came from"
            )
        return "vector"
    can = hasattr(codec, "decode_expected")
    if codec_input == "expected" and not can:
        raise MetisError(
            f"codec input 'expected' needs a codec that decodes code distributions (kind world); this "
            f"codec (kind {getattr(codec, 'kind', 'neural')}) decodes codes: use --codec-input codes"
        )
    if codec_input == "auto":
        return "expected" if can else "codes"
    return codec_input


def generate_audio(
    models: list[S2AModel],
    codec,
    ssl_tokens: list[torch.Tensor],
    prompt_ssl: list[torch.Tensor],
    prompt_codes: list[torch.Tensor],
    settings: list[MaskPredictSettings],
    generator: torch.Generator | None = None,
    batched_cfg: bool = True,
    oracle_codes: list[torch.Tensor] | None = None,
    codec_input: str = "codes",
) -> list:
    """S2A (``generate_codes``), then the codec: one float32 waveform (numpy) per utterance. ``codec_input``
    is resolved (``resolve_codec_input``): "codes" decodes the codes, "expected" S2A's distributions."""
    if models[0].cfg.output == "vector":
        if oracle_codes:
            raise MetisError("oracle codebooks need an S2A that predicts codes; this one regresses the codec's vector")
        return generate_vectors(models[0], codec, ssl_tokens, prompt_ssl, prompt_codes, codec_input)
    expected = resolve_codec_input(codec, codec_input) == "expected"
    out = generate_codes(
        models,
        ssl_tokens,
        prompt_ssl,
        prompt_codes,
        settings,
        generator,
        batched_cfg,
        oracle_codes,
        return_probs=expected,
    )
    device = models[0].mask_emb.device
    with torch.no_grad():
        if expected:
            return [codec.decode_expected(p[None].to(device))[0].float().cpu().numpy() for p in out[1]]
        return [codec.decode(c[None].to(device))[0].float().cpu().numpy() for c in out]


def generate_vectors(
    model: S2AVectorModel,
    codec,
    ssl_tokens: list[torch.Tensor],
    prompt_ssl: list[torch.Tensor],
    prompt_codes: list[torch.Tensor],
    codec_input: str = "auto",
) -> list:
    """An S2A of output 'vector': one forward pass predicts the codec's vector of every target frame, which the
    codec synthesises (``decode_vectors``); one float32 waveform (numpy) per utterance. ``codec_input`` is
    checked as ``resolve_codec_input`` does for this model ("codes" is refused)."""
    resolve_codec_input(codec, codec_input, [model])
    vectors = predict_vectors(model, ssl_tokens, prompt_ssl, prompt_codes)
    return [codec.decode_vectors(v[None])[0].cpu().numpy() for v in vectors]


def predict_vectors(
    model: S2AVectorModel,
    ssl_tokens: list[torch.Tensor],
    prompt_ssl: list[torch.Tensor],
    prompt_codes: list[torch.Tensor],
) -> list[torch.Tensor]:
    """An S2A of output 'vector', one forward pass: the codec's vectors [len(ssl_tokens[i]), vector_dim] (float32)
    of each utterance's target frames, its prompt's left out."""
    valid, prompt, _, ssl, codes = _s2a_batch(
        ssl_tokens, prompt_ssl, prompt_codes, model.cfg.n_codebooks, model.mask_emb.device
    )
    with torch.no_grad():
        vectors = model(model.vectors(codes), valid, ssl, prompt).float()
    return [vectors[i, len(p) : len(p) + len(s)] for i, (p, s) in enumerate(zip(prompt_ssl, ssl_tokens, strict=True))]


def _s2a_batch(ssl_tokens, prompt_ssl, prompt_codes, n_codebooks: int, device):
    """The padded S2A batch ``[prompt ; target ; padding]``: (valid, prompt, target masks [B, T]; SSL tokens
    [B, T]; codes [B, T, n_codebooks], the prompts' and zeros elsewhere), after checking each prompt's codes."""
    for i, (ps, pc) in enumerate(zip(prompt_ssl, prompt_codes, strict=True)):
        if len(ps) != len(pc) or (len(pc) and pc.shape[-1] != n_codebooks):
            raise MetisError(
                f"utterance {i}: prompt of {len(ps)} SSL tokens and codes of shape {tuple(pc.shape)}; "
                f"expected [{len(ps)}, {n_codebooks}]"
            )
    valid, prompt, target = _layout([len(p) for p in prompt_ssl], [len(s) for s in ssl_tokens], device)
    ssl = torch.zeros(valid.shape, dtype=torch.long, device=device)
    codes = torch.zeros((*valid.shape, n_codebooks), dtype=torch.long, device=device)
    for i, (ps, pc, s) in enumerate(zip(prompt_ssl, prompt_codes, ssl_tokens, strict=True)):
        ssl[i, : len(ps) + len(s)] = torch.cat([ps.to(device), s.to(device)])
        if len(pc):
            codes[i, : len(pc)] = pc.to(device)
    return valid, prompt, target, ssl, codes


def _layout(prompt_lengths: list[int], target_lengths: list[int], device):
    lengths = torch.tensor([p + t for p, t in zip(prompt_lengths, target_lengths, strict=True)], device=device)
    positions = torch.arange(int(lengths.max()), device=device)[None]
    prompts = torch.tensor(prompt_lengths, device=device)[:, None]
    valid = positions < lengths[:, None]
    prompt = positions < prompts
    return valid, prompt, valid & ~prompt


def generate_ssl_tokens(
    model: Stage1Model,
    prompts: list[torch.Tensor],
    target_lengths: list[int],
    settings: MaskPredictSettings,
    generator: torch.Generator | None = None,
    batched_cfg: bool = True,
    phones: list[torch.Tensor] | None = None,
    frame_conditions: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Stage 1: ``target_lengths[i]`` tokens after prompt i (empty = unconditional), optionally
    conditioned on a phone sequence (text prefix; dropped in the unconditional CFG branch) and on frame
    features [prompt + target frames, dim] (kept in both branches)."""
    device = model.head.weight.device
    valid, _, target = _layout([len(p) for p in prompts], target_lengths, device)
    tokens = torch.zeros(valid.shape, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = p.to(device)
    phone_ids = phone_valid = frames = None
    if phones is not None:
        phone_ids = torch.zeros(len(phones), max(len(p) for p in phones), dtype=torch.long, device=device)
        phone_valid = torch.zeros(phone_ids.shape, dtype=torch.bool, device=device)
        for i, p in enumerate(phones):
            phone_ids[i, : len(p)], phone_valid[i, : len(p)] = p.to(device), True
    if frame_conditions is not None:
        frames = torch.zeros(*valid.shape, frame_conditions[0].shape[-1], device=device)
        for i, f in enumerate(frame_conditions):
            if len(f) != int(valid[i].sum()):
                raise MetisError(
                    f"utterance {i}: {len(f)} condition frames for {int(valid[i].sum())} prompt + target frames"
                )
            frames[i, : len(f)] = f.to(device)

    def hidden_fn(tok, masked, val, t, rows, unconditional):
        conditions = {}
        if phone_ids is not None:
            conditions["phones"], conditions["phone_valid"] = (
                phone_ids[rows],
                phone_valid[rows] & ~unconditional[:, None],
            )
        if frames is not None:
            conditions["frame_condition"] = frames[rows]
        return model.hidden(tok, masked, val, t, **conditions)

    out = mask_predict(hidden_fn, model.logits, tokens, target, valid, settings, generator, batched_cfg)
    return [out[i, len(p) : len(p) + n].cpu() for i, (p, n) in enumerate(zip(prompts, target_lengths, strict=True))]


def generate_codes(
    models: list[S2AModel],
    ssl_tokens: list[torch.Tensor],
    prompt_ssl: list[torch.Tensor],
    prompt_codes: list[torch.Tensor],
    settings: list[MaskPredictSettings],
    generator: torch.Generator | None = None,
    batched_cfg: bool = True,
    oracle_codes: list[torch.Tensor] | None = None,
    return_probs: bool = False,
):
    """S2A: codes [T_i, n_codebooks] for the SSL tokens [T_i] of each utterance, in the voice and
    conditions of its acoustic prompt (prompt_ssl [P_i], prompt_codes [P_i, n_codebooks]; P_i may be 0).
    ``oracle_codes`` [T_i, K] (a diagnostic): the first K codebooks are taken from them, not generated.
    ``return_probs``: also returns each utterance's predicted distributions [T_i, n_codebooks, V] (see
    ``mask_predict``; one-hot for oracle codebooks), for a codec that decodes their expected value."""
    device = models[0].mask_emb.device
    n_codebooks = models[0].cfg.n_codebooks
    n_oracle = oracle_codes[0].shape[-1] if oracle_codes else 0
    if n_oracle > n_codebooks:
        raise MetisError(f"oracle codes of {n_oracle} codebooks; the S2A model has {n_codebooks}")
    for i, (oc, s) in enumerate(zip(oracle_codes or [], ssl_tokens, strict=False)):
        if tuple(oc.shape) != (len(s), n_oracle):
            raise MetisError(
                f"utterance {i}: oracle codes of shape {tuple(oc.shape)} for {len(s)} SSL tokens; "
                f"expected [{len(s)}, {n_oracle}] (the same number of codebooks for every utterance)"
            )
    prompt_lengths = [len(p) for p in prompt_ssl]
    valid, prompt, target, ssl, codes = _s2a_batch(ssl_tokens, prompt_ssl, prompt_codes, n_codebooks, device)
    for i, (p, s) in enumerate(zip(prompt_lengths, ssl_tokens, strict=True)):
        if n_oracle:
            codes[i, p : p + len(s), :n_oracle] = oracle_codes[i].to(device)
    by_layer = {j: model for model in models for j in model.cfg.codebooks}
    probs = None
    if return_probs:
        vocab = models[0].cfg.codebook_size
        probs = torch.nn.functional.one_hot(codes, vocab).float()
    for layer in range(n_oracle, n_codebooks):
        model = by_layer[layer]

        def hidden_fn(tok, masked, val, t, rows, unconditional, layer=layer, model=model):
            current = codes[rows].clone()
            current[..., layer] = tok
            return model.hidden(current, layer, masked, val, t, ssl[rows], prompt[rows] & ~unconditional[:, None])

        def logits_fn(h, layer=layer, model=model):
            return model.logits(h, layer)

        out = mask_predict(
            hidden_fn,
            logits_fn,
            codes[..., layer],
            target,
            valid,
            settings[layer],
            generator,
            batched_cfg,
            return_probs,
        )
        if return_probs:
            codes[..., layer], layer_probs = out
            probs[..., layer, :][target] = layer_probs[target]
        else:
            codes[..., layer] = out
    rows = [slice(p, p + len(s)) for p, s in zip(prompt_lengths, ssl_tokens, strict=True)]
    if return_probs:
        return [codes[i, r].cpu() for i, r in enumerate(rows)], [probs[i, r].cpu() for i, r in enumerate(rows)]
    return [codes[i, r].cpu() for i, r in enumerate(rows)]
