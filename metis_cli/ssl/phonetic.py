"""The phonetic front end: a small frame classifier whose bottleneck stands in for a large SSL model's layer.

At full scale the SSL features are w2v-BERT 2.0's layer 17, whose k-means clusters follow the phones. No
self-supervised model that can be trained on the embedded corpus (45 minutes of speech, two CPU cores) comes
near that; MFCC clusters carry the speaker and the channel as much as the phone (docs/phonetic_ssl.md measures
both). This model gets the phonetic content from the corpus's own phone timings instead:

    MFCC (the builtin front end, 39 dims) --per-utterance mean/variance norm--> dilated 1-D convolutions
    --> a linear bottleneck (the features, ``bottleneck_dim``) --> linear --> phone x state logits

It is trained (``metis train-phonetic``) to classify each 20 ms frame as one third (``n_states``) of the
phone that ``phones.ctm`` puts there; ``metis extract-ssl --extractor <model dir>`` then writes its
bottleneck, which stage 2 clusters like any SSL features. Labels are used here only: the tokens of every
later stage come from audio alone. A model dir holds ``phonetic.safetensors`` and ``phonetic.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metis_cli.config import check_keys
from metis_cli.errors import MetisError
from metis_cli.ssl.extractors import HOP, SAMPLE_RATE

MODEL_NAME = "phonetic"  # checkpoints/step_N/phonetic.safetensors; the model dir's phonetic.safetensors
MODEL_DIR = "model"  # <exp_dir>/model: what `metis extract-ssl --extractor` reads
FRAME_RATE = SAMPLE_RATE / HOP  # 50 frames per second, the SSL token rate
IGNORE = -100  # frames with no phone timing (past the last one): no loss


@dataclass
class PhoneticConfig:
    input_dim: int = 39  # the builtin MFCC front end
    dim: int = 192
    n_layers: int = 4  # residual blocks, dilations 1, 2, 4, 8, ...
    kernel_size: int = 5
    bottleneck_dim: int = 32  # the features stage 2 clusters
    n_states: int = 3  # each phone split into this many equal parts in time
    dropout: float = 0.1
    phones: list = field(default_factory=list)  # the inventory, from the train set's phones.ctm

    @classmethod
    def from_dict(cls, d: dict) -> "PhoneticConfig":
        check_keys(d, cls, "phonetic model config")
        return cls(**d)

    @property
    def n_classes(self) -> int:
        return max(1, len(self.phones)) * self.n_states

    def receptive_field(self) -> int:
        """Frames each output sees on either side."""
        half = self.kernel_size // 2
        return half + sum(half * 2**i for i in range(self.n_layers))


class _Block(nn.Module):
    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, dim, T]
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.conv(torch.nn.functional.gelu(h)))


class PhoneticModel(nn.Module):
    def __init__(self, cfg: PhoneticConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(cfg.input_dim, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.kernel_size, 2**i, cfg.dropout) for i in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.bottleneck = nn.Linear(cfg.dim, cfg.bottleneck_dim)
        self.classifier = nn.Linear(cfg.bottleneck_dim, cfg.n_classes)

    def features(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Normalised MFCC [B, T, input_dim] -> bottleneck [B, T, bottleneck_dim]."""
        x = self.inp(mfcc.transpose(1, 2))
        for block in self.blocks:
            x = block(x)
        return self.bottleneck(torch.nn.functional.gelu(self.norm(x.transpose(1, 2))))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Normalised MFCC [B, T, input_dim] -> logits [B, T, n_classes]."""
        return self.classifier(self.features(mfcc))


def utterance_norm(mfcc: np.ndarray) -> np.ndarray:
    """Each dimension to zero mean and unit variance over the utterance (removes the channel and part of the
    speaker); float32."""
    mfcc = np.asarray(mfcc, dtype=np.float64)
    return ((mfcc - mfcc.mean(0)) / np.sqrt(mfcc.var(0) + 1e-5)).astype(np.float32)


def phone_hits(logits: torch.Tensor, labels: torch.Tensor, n_states: int) -> tuple[int, int]:
    """Frames whose most likely class (``logits`` [..., classes]) is a part of the labelled phone, and frames with
    a label (not IGNORE): a front end's phone accuracy, in training, validation and bench/phone_accuracy.py."""
    keep = labels != IGNORE
    hit = logits.argmax(-1) // n_states == labels // n_states
    return int(hit[keep].sum()), int(keep.sum())


def frame_targets(timings, n_frames: int, phones: dict[str, int], n_states: int) -> np.ndarray:
    """Each frame's class, ``phone * n_states + part`` (the part of the phone it falls in), from ctm timings;
    IGNORE where no timing covers the frame's centre."""
    out = np.full(n_frames, IGNORE, dtype=np.int64)
    for item in timings:
        first = max(0, math.ceil(item.start * FRAME_RATE - 0.5))
        last = min(n_frames, math.ceil(item.end * FRAME_RATE - 0.5))
        if last <= first or item.token not in phones:
            continue
        parts = (np.arange(last - first) * n_states) // (last - first)
        out[first:last] = phones[item.token] * n_states + parts
    return out


def save_model(model: PhoneticModel, out_dir, extra: dict | None = None) -> dict:
    """Writes a model dir (``phonetic.safetensors`` + ``phonetic.json``, atomically); returns the json."""
    from metis_cli.checkpoint import write_model_dir
    from metis_cli.models.transformer import count_parameters

    info = {
        "kind": "phonetic",
        "dim": model.cfg.bottleneck_dim,
        "model": asdict(model.cfg),
        "parameters": count_parameters(model),
        **(extra or {}),
    }
    return write_model_dir(out_dir, MODEL_NAME, model, info)


def is_model_dir(path) -> bool:
    return (Path(path) / f"{MODEL_NAME}.json").is_file()


def load_model(model_dir) -> PhoneticModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    try:
        info = json.loads((model_dir / f"{MODEL_NAME}.json").read_text())
        model = PhoneticModel(PhoneticConfig.from_dict(info["model"]))
        model.load_state_dict(load_file(str(model_dir / f"{MODEL_NAME}.safetensors")))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MetisError(
            f"{model_dir}: not a readable phonetic model ({reason}); rerun `metis train-phonetic` to rewrite it"
        ) from None
    return model.eval()


class PhoneticExtractor:
    """``metis extract-ssl --extractor <model dir>``: 16 kHz audio -> [frames, bottleneck_dim] at 50 Hz."""

    def __init__(self, model_dir, device: str | None = None):
        from metis_cli.ssl.extractors import MFCCExtractor

        self.mfcc = MFCCExtractor()
        self.model = load_model(model_dir)
        self.device = device or "cpu"
        self.model.to(self.device)
        self.name = f"phonetic:{model_dir}"
        self.dim = self.model.cfg.bottleneck_dim

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(utterance_norm(self.mfcc(wav)))[None].to(self.device)
        with torch.inference_mode():
            return self.model.features(x)[0].float().cpu().numpy()
