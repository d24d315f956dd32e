"""How to decode: the settings every decoder shares (``metis resynth``, ``metis decode``, ``metis synth``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

# Named step presets, under any explicit --stage1-opt / --s2a-opt. "published": the published step counts
# (the task registry's stage-1 settings, S2A_DEFAULTS). "fast": 10 stage-1 steps and S2A steps [10, 4, 1]
# (codebook 0, 1, each further one): about 2.5x fewer forwards; its quality and speed against the published
# steps are measured in docs/benchmarks.md.
PRESETS = {
    "published": {},
    "fast": {"stage1": {"steps": 10}, "s2a": {"steps": [10, 4, 1]}},
}


@dataclass
class DecodeOptions:
    stage1: dict | None = None  # stage-1 mask-predict settings over the task's published ones (steps, cfg_scale...)
    s2a: dict | None = None  # S2A settings over the published ones, per codebook as lists (steps=[40, 16, 1])
    batch_size: int = 8  # utterances decoded together
    seed: int = 0
    device: str = "auto"  # auto (a GPU when one is visible, else the CPU), cpu, cuda, cuda:N
    # the transformers in bfloat16 (the codec stays in float32); None: where the hardware computes it (a GPU, a CPU
    # with AMX or AVX512-BF16: metis_cli.env.cpu_bf16_native), float32 elsewhere (emulated bf16 is 5.6x slower)
    bf16: bool | None = None
    int8: bool = False  # the transformers' linear layers with int8 weights (dynamic quantisation; CPU only)
    preset: str = "published"  # step counts: a name of PRESETS, under stage1 / s2a
    codec_input: str = "auto"  # what the codec decodes: codes, expected, auto (metis_cli.infer.generate)
    watermark: bool = True  # mark every output (metis_cli/watermark.py); fine-tuned task models only
    watermark_key: str | None = None

    def placed(self) -> DecodeOptions:
        """These options with ``device`` and ``bf16`` decided for this machine (``auto``, ``None``) and checked
        (``int8``: on the CPU, in float32), the preset's step counts folded into ``stage1`` and ``s2a`` under the
        explicit ones (placing twice changes nothing)."""
        from metis_cli.env import check_device, resolve_cpu_bf16, resolve_device
        from metis_cli.errors import MetisError

        if self.preset not in PRESETS:
            raise MetisError(f"unknown decoding preset '{self.preset}': choose {', '.join(PRESETS)}")
        preset = PRESETS[self.preset]
        stage1 = {**preset.get("stage1", {}), **(self.stage1 or {})} or None
        s2a = {**preset.get("s2a", {}), **(self.s2a or {})} or None
        device = check_device(resolve_device(self.device))
        if self.int8 and device != "cpu":
            raise MetisError(f"int8 weights are a CPU option, the device is {device}: leave out --int8 (use --bf16)")
        if self.int8 and self.bf16:
            raise MetisError("--int8 and --bf16 exclude each other: int8 layers take float32 inputs")
        if device == "cpu":  # unset: where the CPU computes it, as train.bf16_cpu: auto
            bf16 = resolve_cpu_bf16("auto" if self.bf16 is None else self.bf16)
        else:
            bf16 = self.bf16 is not False
        return replace(self, device=device, bf16=bf16 and not self.int8, stage1=stage1, s2a=s2a)

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the transformers' activations (placed options)."""
        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def precision(self) -> str:
        """How the transformers compute, for decode.json: ``bfloat16``, ``float32`` or ``float32, int8 linear
        weights`` (placed options)."""
        return str(self.dtype).removeprefix("torch.") + (", int8 linear weights" if self.int8 else "")

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` (on its device, in eval mode) in the decoding precision: bfloat16, float32, or float32 with
        int8 linear weights."""
        model = model.to(self.dtype)
        return int8_linear_weights(model) if self.int8 else model


def int8_linear_weights(model: nn.Module) -> nn.Module:
    """``model`` with the linear layers of its transformer stacks (where nearly all its FLOPs are) dynamically
    quantised: int8 weights, one scale per output channel, activations quantised per batch on the fly (VNNI/AMX
    kernels on x86 CPUs). Embeddings, output heads and the visual front end stay float32. Inference only;
    bench/decode.py measures the speed, bench/int8.py how often the tokens agree with float32."""
    import warnings

    from torch.ao.quantization import quantize_dynamic
    from torch.ao.quantization.qconfig import per_channel_dynamic_qconfig

    from metis_cli.models.transformer import MaskedTransformer

    stacks = [m for m in model.modules() if isinstance(m, MaskedTransformer)]
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao; it is what ships with torch
        warnings.simplefilter("ignore")
        for stack in stacks:
            quantize_dynamic(stack.eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model.eval()
