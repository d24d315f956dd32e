"""SSL feature extractors: 16 kHz mono audio in, [frames, dim] features out, at 50 frames per second.

- ``builtin``: MFCC (13) with deltas and delta-deltas, 39 dims, 25 ms windows every 20 ms. It needs no
  weights, so the embedded corpus runs anywhere; it is what HuBERT's first iteration clustered, and its
  k-means units follow phones well enough for the mini recipes (the quality report measures how well).
- A local ``transformers`` model directory: w2v-BERT 2.0, HuBERT, WavLM or wav2vec 2.0; ``layer`` picks
  ``hidden_states[layer]`` (0 = the embedding output before the first transformer layer). Layers past
  the chosen one are dropped before running, which changes nothing in ``hidden_states[layer]``.
  Long audio runs in chunks (``chunk_seconds``) so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metis_cli.errors import MetisError

SAMPLE_RATE = 16000
HOP = 320  # 20 ms: 50 frames per second, the rate of every token stream in Metis
SUPPORTED_MODEL_TYPES = ("wav2vec2-bert", "hubert", "wavlm", "wav2vec2")


class TooShortError(MetisError):
    """Audio shorter than one frame."""


def _frames(wav: np.ndarray, window: int, hop: int) -> np.ndarray:
    """len(wav) // hop frames of ``window`` samples, each centred on its hop."""
    count = len(wav) // hop
    if count == 0:
        raise TooShortError(f"audio of {len(wav)} samples is shorter than one frame ({hop} samples)")
    left = (window - hop) // 2
    padded = np.pad(wav, (left, max(0, (count - 1) * hop + window - left - len(wav))))
    return np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]


def deltas(features: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over +-width frames (edges repeated)."""
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    n = len(features)
    weights = np.arange(1, width + 1)
    num = sum(w * (padded[width + w : width + w + n] - padded[width - w : width - w + n]) for w in weights)
    return num / (2 * np.sum(weights**2))


class MFCCExtractor:
    name = "builtin"
    dim = 39

    def __init__(self, n_mels: int = 40, n_ceps: int = 13, n_fft: int = 512, window: int = 400):
        from metis_cli.dsp import mel_filterbank

        self.n_fft, self.window, self.n_ceps = n_fft, window, n_ceps
        self.filters = mel_filterbank(SAMPLE_RATE, n_fft, n_mels, f_min=20.0)
        self.taper = np.hamming(window)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        from scipy.fftpack import dct

        frames = _frames(np.asarray(wav, dtype=np.float64), self.window, HOP) * self.taper
        power = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=1)) ** 2
        # einsum without BLAS: bit-identical results whatever the process, thread count or memory alignment,
        # so that a resumed run reproduces the first one exactly.
        mel = np.einsum("tf,mf->tm", power, self.filters, optimize=False)
        mfcc = dct(np.log(mel + 1e-8), type=2, norm="ortho", axis=1)[:, : self.n_ceps]
        d1 = deltas(mfcc)
        return np.concatenate([mfcc, d1, deltas(d1)], axis=1).astype(np.float32)


class TransformersExtractor:
    def __init__(self, model_dir, layer: int, device: str | None = None, chunk_seconds: float = 30.0):
        import torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise MetisError(
                f"{model_dir}: not a model directory (no config.json); SSL models are loaded from local dirs only"
            )
        config = AutoConfig.from_pretrained(str(model_dir))
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise MetisError(
                f"{model_dir}: model type '{config.model_type}' is not a supported SSL model "
                f"({', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        if not 0 <= layer <= config.num_hidden_layers:
            raise MetisError(
                f"{model_dir}: layer {layer} is out of range: hidden_states has indices 0..{config.num_hidden_layers}"
            )
        self.torch = torch
        self.name = f"{config.model_type}:{model_dir}"
        self.layer = layer
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.chunk = int(chunk_seconds * SAMPLE_RATE)
        self.features = AutoFeatureExtractor.from_pretrained(str(model_dir))
        model = AutoModel.from_pretrained(str(model_dir)).eval()
        if layer < config.num_hidden_layers:
            model.encoder.layers = model.encoder.layers[: layer + 1]
        self.model = model.to(self.device)
        self.dim = config.hidden_size

    def _run(self, wav: np.ndarray) -> np.ndarray:
        inputs = self.features(wav, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with self.torch.inference_mode():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.layer][0]
        return hidden.float().cpu().numpy()

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        if len(wav) < HOP:
            raise TooShortError(f"audio of {len(wav)} samples is shorter than one frame ({HOP} samples)")
        wav = np.asarray(wav, dtype=np.float32)
        parts = [
            self._run(wav[i : i + self.chunk])
            for i in range(0, len(wav), self.chunk)
            if len(wav[i : i + self.chunk]) >= HOP
        ]
        return np.concatenate(parts, axis=0)


def load_extractor(spec: str, layer: int | None = None, device: str | None = None, chunk_seconds: float = 30.0):
    """``builtin``, a phonetic front end's model dir (``metis train-phonetic``), or a local transformers SSL
    model dir (then ``layer`` is required)."""
    if spec == "builtin":
        return MFCCExtractor()
    from metis_cli.ssl.phonetic import PhoneticExtractor, is_model_dir

    if is_model_dir(spec):
        return PhoneticExtractor(spec, device)
    if layer is None:
        raise MetisError(f"{spec}: choose a hidden layer with --layer (w2v-BERT 2.0 in Metis: 17)")
    if not Path(spec).is_dir():
        raise MetisError(f"{spec}: not 'builtin' and no such model directory (models are never downloaded)")
    return TransformersExtractor(spec, layer, device, chunk_seconds)
