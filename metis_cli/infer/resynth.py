"""Hearing the stages before any task exists: a data dir through S2A and the codec.

- resynthesis (task ``resynth``): each utterance's ground-truth SSL tokens -> S2A, with an acoustic
  prompt from *another* utterance of the same speaker -> codec decode. Scored against the original, it
  measures S2A + codec: how much of the speech the SSL tokens carry.
  With ``oracle_codebooks`` K, the first K codebooks are the utterance's own codes and S2A generates
  only the rest: how much each codebook's prediction costs (K = all of them is the codec alone).
- generation (task ``generate``, with a stage-1 model): stage 1 first continues the prompt's SSL tokens
  (or, without a prompt, generates from nothing) for as many frames as the original has; the words are
  the model's own, so only voice similarity to the prompt and quality are scored.

Outputs go to ``<out_dir>/wav/<utt>.wav``; a rerun skips utterances already written, and an utterance
that fails is logged and skipped. ``decode.json`` records the models, the settings and the real-time factor.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from metis_cli.data.batching import Piece, UtteranceArrays
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.infer.decode_loop import decode_utterances
from metis_cli.infer.generate import (
    checkpoints_of,
    generate_audio,
    generate_ssl_tokens,
    load_s2a,
    load_stage1,
    resolve_codec_input,
    s2a_settings_for,
)
from metis_cli.infer.mask_predict import MaskPredictSettings
from metis_cli.infer.options import DecodeOptions
from metis_cli.task_registry import TASKS

logger = logging.getLogger(__name__)


def same_speaker_prompts(utts: list[str], utt2spk: dict[str, str]) -> dict[str, str | None]:
    """For each utterance, the next other utterance of its speaker (in sorted order, wrapping round);
    None for a speaker with one utterance."""
    by_speaker: dict[str, list[str]] = {}
    for utt in sorted(utts):
        by_speaker.setdefault(utt2spk.get(utt, utt), []).append(utt)
    prompts = {}
    for group in by_speaker.values():
        for i, utt in enumerate(group):
            prompts[utt] = group[(i + 1) % len(group)] if len(group) > 1 else None
    return prompts


def resynthesize(
    data_dir,
    out_dir,
    s2a_dirs,
    codec_dir,
    stage1_dir=None,
    options: DecodeOptions | None = None,
    prompt_seconds: float = 3.0,
    use_prompt: bool = True,
    oracle_codebooks: int = 0,
    batched_cfg: bool = True,
) -> dict:
    """Decodes every utterance of ``data_dir`` into the decode dir ``out_dir`` (see the module doc), with the
    settings of ``options`` (its watermark does not apply: resynthesis hears the models, it publishes nothing);
    ``batched_cfg``: the two guidance branches as one batch (False: two passes; the same output)."""
    from metis_cli.codec.inference import load_codec
    from metis_cli.data.decode_dir import write_decode_dir

    options = (options or DecodeOptions()).placed()
    device, seed, codec_input = options.device, options.seed, options.codec_input
    s2a_settings, stage1_settings = options.s2a, options.stage1
    data_dir, out = Path(data_dir), Path(out_dir)
    arrays = UtteranceArrays([data_dir], ("ssl_tokens", "acoustic_codes"), min_frames=1)
    s2a_models = [options.prepare(m) for m in load_s2a(s2a_dirs, device)]
    codec = load_codec(codec_dir, device=device)
    n_codebooks = s2a_models[0].cfg.n_codebooks
    if codec.cfg.quantizer.n_codebooks != n_codebooks:
        raise MetisError(
            f"the codec {codec_dir} has {codec.cfg.quantizer.n_codebooks} codebooks, the S2A model {n_codebooks}"
        )
    s2a_cfg = s2a_settings_for(s2a_models, s2a_settings)
    codec_input = resolve_codec_input(codec, codec_input, s2a_models)
    if not 0 <= oracle_codebooks <= n_codebooks:
        raise MetisError(f"oracle codebooks: {oracle_codebooks} is not in 0..{n_codebooks}")
    if oracle_codebooks and stage1_dir is not None:
        raise MetisError("oracle codebooks need the ground-truth SSL tokens: leave out --stage1")
    stage1 = None
    if stage1_dir is not None:
        stage1 = options.prepare(load_stage1(stage1_dir, device))
        stage1_cfg = MaskPredictSettings.checked(
            {**TASKS["generate"].stage1_defaults, **(stage1_settings or {})}, "stage-1 decode settings"
        )
    frame_rate = float(arrays.meta("ssl_tokens").get("frame_rate", 50))
    prompt_frames = int(round(prompt_seconds * frame_rate))
    data = DataDir(data_dir)
    utt2spk = data.read("utt2spk") if data.has("utt2spk") else {}
    wav_scp = data.read("wav.scp") if data.has("wav.scp") else {}
    utts = sorted(arrays.lengths)
    prompts = same_speaker_prompts(utts, utt2spk) if use_prompt else {u: None for u in utts}
    if use_prompt and any(p is None for p in prompts.values()):
        logger.warning(
            "%s: %d utterance(s) have no other utterance of their speaker: decoded without a prompt",
            data_dir,
            sum(p is None for p in prompts.values()),
        )

    def prompt_piece(utt) -> Piece:
        source = prompts[utt]
        if source is None:  # no prompt: 0 frames (of the utterance itself: only the array shapes matter)
            return Piece(utt, 0, 0)
        return Piece(source, 0, min(prompt_frames, arrays.lengths[source]))

    generator = torch.Generator(device=device).manual_seed(seed)

    def decode_batch(batch: list[str]) -> tuple[dict, dict]:
        targets = [arrays.get(Piece(u, 0, arrays.lengths[u])) for u in batch]
        prompt_arrays = [arrays.get(prompt_piece(u)) for u in batch]
        prompt_ssl = [torch.from_numpy(p["ssl_tokens"]) for p in prompt_arrays]
        prompt_codes = [torch.from_numpy(p["acoustic_codes"]) for p in prompt_arrays]
        ssl = [torch.from_numpy(t["ssl_tokens"]) for t in targets]
        if stage1 is not None:
            ssl = generate_ssl_tokens(stage1, prompt_ssl, [len(s) for s in ssl], stage1_cfg, generator, batched_cfg)
        oracle = (
            [torch.from_numpy(t["acoustic_codes"][:, :oracle_codebooks]) for t in targets] if oracle_codebooks else None
        )
        wavs = generate_audio(
            s2a_models, codec, ssl, prompt_ssl, prompt_codes, s2a_cfg, generator, batched_cfg, oracle, codec_input
        )
        return dict(zip(batch, wavs, strict=True)), {}

    run = decode_utterances(
        out,
        utts,
        decode_batch,
        codec.cfg.sample_rate,
        options.batch_size,
        order=lambda u: arrays.lengths[u],
        label=f"{'generate' if stage1 else 'resynth'} {data_dir.name}",
    )
    done = run.done
    prompt_scp = {u: wav_scp[p] for u, p in prompts.items() if p and p in wav_scp and u in done}
    if prompt_scp:
        DataDir(out).write("prompt.scp", prompt_scp)
    info = {
        "s2a": [str(Path(d).resolve()) for d in s2a_dirs],
        "codec": str(Path(codec_dir).resolve()),
        "stage1": str(Path(stage1_dir).resolve()) if stage1_dir else None,
        "prompt_seconds": prompt_seconds if use_prompt else 0,
        "oracle_codebooks": oracle_codebooks,
        "codec_input": codec_input,
        "checkpoints": checkpoints_of(stage1=stage1, s2a=s2a_models, codec=codec),
        "s2a_settings": [vars(s) for s in s2a_cfg],
        "stage1_settings": vars(stage1_cfg) if stage1 else None,
        "seed": seed,
        "dtype": options.precision,
        "seconds": round(run.seconds, 2),
        "real_time_factor": run.real_time_factor,
        "failed": len(run.failed),
    }
    write_decode_dir(
        out, "generate" if stage1 else "resynth", data_dir, done, sample_rate=codec.cfg.sample_rate, **info
    )
    return run.summary(out)
