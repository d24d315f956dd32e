"""Shared fixtures: generated audio, small data dirs, and the tiny embedded corpus (built once)."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def tone(freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wav = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return wav if channels == 1 else np.stack([wav * (c + 1) / channels for c in range(channels)], axis=1)


def write_wav(path: Path, freq=440.0, seconds=1.0, sample_rate=16000, channels=1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds, sample_rate, channels), sample_rate)
    return path


def make_datadir(root: Path, speakers=("spkA", "spkB"), utts_per_speaker=2, text=True) -> Path:
    """A small valid data dir with real 16 kHz wav files; returns its path."""
    dd = root / "data"
    dd.mkdir(parents=True, exist_ok=True)
    wav_scp, utt2spk, texts = [], [], []
    for spk in speakers:
        for i in range(utts_per_speaker):
            utt = f"{spk}_u{i}"
            wav = write_wav(root / "wav" / f"{utt}.wav", freq=200 + 50 * i, seconds=0.5 + 0.25 * i)
            wav_scp.append(f"{utt} {wav}")
            utt2spk.append(f"{utt} {spk}")
            texts.append(f"{utt} hello world number {i}")
    (dd / "wav.scp").write_text("\n".join(sorted(wav_scp)) + "\n")
    (dd / "utt2spk").write_text("\n".join(sorted(utt2spk)) + "\n")
    if text:
        (dd / "text").write_text("\n".join(sorted(texts)) + "\n")
    spk2utt = [f"{spk} " + " ".join(f"{spk}_u{i}" for i in range(utts_per_speaker)) for spk in sorted(speakers)]
    (dd / "spk2utt").write_text("\n".join(spk2utt) + "\n")
    return dd


@pytest.fixture
def datadir(tmp_path) -> Path:
    return make_datadir(tmp_path)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The embedded corpus at its tiny size, synthesised once per test session."""
    from metis_cli.corpus.mini import make_mini_corpus

    out = tmp_path_factory.mktemp("mini")
    make_mini_corpus(out, size="tiny", seed=0, num_jobs=2)
    return out
