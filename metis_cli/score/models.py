"""Model-based scorers, each loaded once per process from a spec string.

- ASR (``--asr``): ``pocketsphinx`` (ships its en-us model; the default) or a local directory holding a
  ``transformers`` speech-recognition model (Whisper, wav2vec2/HuBERT CTC, ...).
- Speaker similarity (``--sim``): ``resemblyzer`` (GE2E, ships its weights; the default) or a local
  directory with a ``transformers`` x-vector model (e.g. WavLM fine-tuned for speaker verification, as
  in the Metis paper).
- DNSMOS P.835 (SIG/BAK/OVRL) and P.808: the ONNX models that the ``speechmos`` package ships, run
  here with onnxruntime.
Nothing is downloaded: a directory that does not exist is an error that names it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from metis_cli.errors import MetisError

SAMPLE_RATE = 16000
# Threads per model; parallel scoring workers set 1 so that they do not compete for the cores.
THREADS: int | None = None


def _model_dir(spec: str, what: str) -> Path:
    path = Path(spec)
    if not path.is_dir():
        raise MetisError(
            f"{what} model '{spec}': not a built-in name and no such directory (models are never downloaded)"
        )
    return path


class PocketSphinxASR:
    name = "pocketsphinx"

    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(self, wav: np.ndarray) -> str:
        # Feature normalisation (CMN) otherwise carries over from the previous utterance, which would
        # make a transcript depend on what the same process decoded before (and so on --nj).
        self.decoder.reinit_feat()
        pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class TransformersASR:
    def __init__(self, model_dir: Path):
        from transformers import pipeline

        self.name = f"transformers:{model_dir}"
        self.pipe = pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu")

    def transcribe(self, wav: np.ndarray) -> str:
        return self.pipe({"raw": wav.astype(np.float32), "sampling_rate": SAMPLE_RATE})["text"]


class ResemblyzerSpeaker:
    name = "resemblyzer"

    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device="cpu", verbose=False)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        trimmed = preprocess_wav(wav, source_sr=SAMPLE_RATE)
        # Resemblyzer's VAD can trim very short or quiet audio to nothing; fall back to the raw signal.
        return self.encoder.embed_utterance(trimmed if len(trimmed) >= SAMPLE_RATE // 4 else wav.astype(np.float32))


class XVectorSpeaker:
    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.name = f"transformers:{model_dir}"
        self.torch = torch
        self.features = AutoFeatureExtractor.from_pretrained(str(model_dir))
        self.model = AutoModelForAudioXVector.from_pretrained(str(model_dir)).eval()

    def embed(self, wav: np.ndarray) -> np.ndarray:
        inputs = self.features(wav.astype(np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with self.torch.no_grad():
            emb = self.model(**inputs).embeddings[0].numpy()
        return emb / (np.linalg.norm(emb) + 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


class DNSMOS:
    """DNSMOS P.835 and P.808 on 9.01 s windows with a 1 s hop; shorter audio is repeated to fill one."""

    name = "dnsmos"
    WINDOW = 9.01
    # Polynomials that map the network's raw P.835 outputs to MOS (the published DNSMOS calibration).
    SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
    BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
    OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])

    def __init__(self, threads: int | None = None):
        import onnxruntime as ort

        models = resources.files("speechmos") / "dnsmos_models"
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.p835 = ort.InferenceSession(str(models / "sig_bak_ovr.onnx"), options, providers=["CPUExecutionProvider"])
        self.p808 = ort.InferenceSession(str(models / "model_v8.onnx"), options, providers=["CPUExecutionProvider"])

    @staticmethod
    def _p808_features(segment: np.ndarray) -> np.ndarray:
        import librosa

        mel = librosa.feature.melspectrogram(y=segment, sr=SAMPLE_RATE, n_fft=321, hop_length=160, n_mels=120)
        return ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T.astype(np.float32)

    def __call__(self, wav: np.ndarray) -> dict[str, float]:
        wav = np.asarray(wav, dtype=np.float32)
        window = int(self.WINDOW * SAMPLE_RATE)
        while len(wav) < window:
            wav = np.concatenate([wav, wav])
        hops = int(len(wav) / SAMPLE_RATE - self.WINDOW) + 1
        scores = []
        for i in range(hops):
            segment = wav[i * SAMPLE_RATE : i * SAMPLE_RATE + window]
            if len(segment) < window:
                continue
            sig, bak, ovrl = self.p835.run(None, {"input_1": segment[None, :]})[0][0]
            p808 = self.p808.run(None, {"input_1": self._p808_features(segment[:-160])[None]})[0][0][0]
            scores.append((self.SIG(sig), self.BAK(bak), self.OVRL(ovrl), p808))
        sig, bak, ovrl, p808 = np.mean(np.array(scores, dtype=np.float64), axis=0)
        return {
            "dnsmos_sig": float(sig),
            "dnsmos_bak": float(bak),
            "dnsmos_ovrl": float(ovrl),
            "dnsmos_p808": float(p808),
        }


@lru_cache(maxsize=None)
def load_asr(spec: str):
    return PocketSphinxASR() if spec == "pocketsphinx" else TransformersASR(_model_dir(spec, "ASR"))


@lru_cache(maxsize=None)
def load_speaker_model(spec: str):
    return ResemblyzerSpeaker() if spec == "resemblyzer" else XVectorSpeaker(_model_dir(spec, "speaker"))


@lru_cache(maxsize=None)
def load_dnsmos() -> DNSMOS:
    return DNSMOS(THREADS)
