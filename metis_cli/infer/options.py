"""How to decode: the settings every decoder shares (``metis resynth``, ``metis decode``, ``metis synth``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DecodeOptions:
    stage1: dict | None = None  # stage-1 mask-predict settings over the task's published ones (steps, cfg_scale...)
    s2a: dict | None = None  # S2A settings over the published ones, per codebook as lists (steps=[40, 16, 1])
    batch_size: int = 8  # utterances decoded together
    seed: int = 0
    device: str = "cpu"  # cpu, cuda, cuda:N
    bf16: bool = False  # the transformers in bfloat16 (the codec stays in float32)
    codec_input: str = "auto"  # what the codec decodes: codes, expected, auto (metis_cli.infer.generate)
    watermark: bool = True  # mark every output (metis_cli/watermark.py); fine-tuned task models only
    watermark_key: str | None = None
