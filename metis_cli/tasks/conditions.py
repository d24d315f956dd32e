"""The conditions of the fine-tuned stage-1 models.

- TTS: phones (``metis_cli.text``) of the prompt text and the target text, as a prefix.
- VC, SE, TSE: normalised SSL features of the condition audio (the source, the noisy speech, the
  enrollment followed by the mixture), one vector per token frame, through the zero-gated frame adapter.
- L2S: visual features of the mouth video (25 fps, interpolated to the token rate, zero over the
  prompt) from the model's visual front end, or pre-computed ones (feats.scp), through the frame adapter.
- Omni: one model with the text prefix and the frame adapter, trained on a mixture of TTS, VC, SE and
  TSE batches; at decoding the task (``mode``) is chosen by the inputs given, and combinations never
  trained can be asked for (text-guided TSE: the mixture through the adapter and the target's words as
  the prefix).

The features come from the same SSL front end (extractor, layer, normalisation stats, k-means model) as
the tokens the model was pre-trained on. A fine-tuned model's experiment dir keeps a copy of the stats
and of the k-means model (config section ``ssl``), so that it can tokenize prompts and compute
conditions for any audio at decoding time. A VQ tokenizer (``metis train-vq``) takes the k-means
model's place: the front end's ``kmeans`` entry names whichever tokenizer dir made the tokens.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np

from metis_cli.data.batching import MAX_FRAME_MISMATCH
from metis_cli.errors import MetisError
from metis_cli.task_registry import TASKS

STATS_FILE = "ssl_stats.safetensors"
KMEANS_DIR = "kmeans"
TOKENIZER_COPY_DIRS = {"kmeans": KMEANS_DIR, "vq": "vq"}  # where for_experiment copies each kind


def check_mode(mode: str | None, model_task: str) -> str:
    """The task a model of ``model_task`` decodes: an Omni model needs ``mode`` (one of its modes), a
    single-task model decodes its own task (``mode`` may repeat it)."""
    modes = TASKS[model_task].modes
    if modes:
        if mode not in modes:
            raise MetisError(
                f"an {model_task} model decodes one task at a time: give --mode {'|'.join(modes)}"
                + (f" (not '{mode}')" if mode else "")
            )
        return mode
    if mode is not None and mode != model_task:
        raise MetisError(f"a {model_task} model decodes {model_task} only, not --mode {mode}; Omni models take modes")
    return model_task


def ssl_front_end(data_dir) -> dict:
    """The SSL front end (extractor, layer, stats, k-means model, frame_rate) that made ``data_dir``'s tokens."""
    path = Path(data_dir) / "ssl_tokens" / "tokens.json"
    if not path.is_file():
        raise MetisError(f"{path}: not found; tokenize {data_dir} first (recipe stage 2)")
    info = json.loads(path.read_text())
    ssl = info.get("ssl") or {}
    if "extractor" not in ssl or "stats" not in ssl or "kmeans" not in info:
        raise MetisError(f"{path}: the tokens do not say which SSL extractor, stats and k-means model made them")
    return {**{k: ssl.get(k) for k in ("extractor", "layer", "stats", "frame_rate", "dim")}, "kmeans": info["kmeans"]}


def _copy_once(src: Path, dst: Path) -> None:
    if not dst.is_file():
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)


class FrameConditioner:
    """Audio (16 kHz mono) -> normalised SSL features [frames, dim] at the token frame rate."""

    sample_rate = 16000

    def __init__(self, front_end: dict):
        from metis_cli.ssl.extract import load_stats
        from metis_cli.ssl.extractors import HOP

        self.front_end = front_end
        self.mean, self.var = load_stats(front_end["stats"])
        self.dim = int(self.mean.shape[-1])
        self.hop = HOP

    @cached_property
    def extractor(self):
        """Loaded on first use: a TTS trainer only copies the front end and never extracts."""
        from metis_cli.ssl.extractors import load_extractor

        return load_extractor(self.front_end["extractor"], self.front_end.get("layer"))

    @cached_property
    def kmeans(self):
        """The SSL tokenizer: a KMeansModel, or a VQTokenizer."""
        from metis_cli.tokenizer import load_tokenizer

        return load_tokenizer(self.front_end["kmeans"])

    @classmethod
    def for_experiment(cls, front_end: dict, exp_dir) -> "FrameConditioner":
        """Copies the stats and the tokenizer (k-means or VQ) into ``exp_dir`` (once) and points the front
        end at them."""
        from metis_cli.tokenizer import TOKENIZER_FILES, tokenizer_kind

        exp_dir = Path(exp_dir)
        kind = tokenizer_kind(front_end["kmeans"])
        copy = exp_dir / TOKENIZER_COPY_DIRS[kind]
        copy.mkdir(parents=True, exist_ok=True)
        _copy_once(Path(front_end["stats"]), exp_dir / STATS_FILE)
        for name in TOKENIZER_FILES[kind]:
            _copy_once(Path(front_end["kmeans"]) / name, copy / name)
        return cls({**front_end, "stats": str((exp_dir / STATS_FILE).resolve()), "kmeans": str(copy.resolve())})

    def tokens(self, features: np.ndarray, utt: str | None = None) -> np.ndarray:
        """SSL tokens [frames] of features from this front end."""
        return self.kmeans.assign(features, utt)

    def __call__(self, wav: np.ndarray, frames: int | None = None) -> np.ndarray:
        """Features of ``wav``; with ``frames``, cut or edge-padded to exactly that many."""
        from metis_cli.ssl.extract import normalize

        feats = normalize(self.extractor(wav), self.mean, self.var).astype(np.float32)
        if frames is not None and len(feats) != frames:
            if abs(len(feats) - frames) > MAX_FRAME_MISMATCH:
                raise MetisError(f"condition features: {len(feats)} frames for {frames} token frames")
            feats = np.pad(feats, ((0, max(0, frames - len(feats))), (0, 0)), mode="edge")[:frames]
        return feats
