"""How to decode: the settings every decoder shares (``metis resynth``, ``metis decode``, ``metis synth``)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass
class DecodeOptions:
    stage1: dict | None = None  # stage-1 mask-predict settings over the task's published ones (steps, cfg_scale...)
    s2a: dict | None = None  # S2A settings over the published ones, per codebook as lists (steps=[40, 16, 1])
    batch_size: int = 8  # utterances decoded together
    seed: int = 0
    device: str = "auto"  # auto (a GPU when one is visible, else the CPU), cpu, cuda, cuda:N
    bf16: bool | None = None  # the transformers in bfloat16 (the codec stays in float32); None: on a GPU only
    codec_input: str = "auto"  # what the codec decodes: codes, expected, auto (metis_cli.infer.generate)
    watermark: bool = True  # mark every output (metis_cli/watermark.py); fine-tuned task models only
    watermark_key: str | None = None

    def placed(self) -> DecodeOptions:
        """These options with ``device`` and ``bf16`` decided for this machine (``auto``, ``None``) and checked."""
        from metis_cli.env import check_device, resolve_device

        device = check_device(resolve_device(self.device))
        bf16 = device.startswith("cuda") if self.bf16 is None else self.bf16
        return replace(self, device=device, bf16=bf16)
