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


def write_token_datadir(
    root: Path, n_utts=12, vocab=16, n_codebooks=3, codebook_size=32, seed=0, min_frames=20, max_frames=60
) -> Path:
    """A data dir with ``ssl_tokens`` and ``acoustic_codes`` stores but no audio: tokens run in segments
    of 2-6 repeated frames (like phones), and every codebook is a fixed function of the token, so a
    model can learn both."""
    from metis_cli.data.arrays import ArrayWriter, write_meta

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    utts = [f"spk{i % 3}_u{i:03d}" for i in range(n_utts)]
    with (
        ArrayWriter(root / "ssl_tokens", "part-1") as tokens_out,
        ArrayWriter(root / "acoustic_codes", "part-1") as codes_out,
    ):
        for utt in sorted(utts):
            length = int(rng.integers(min_frames, max_frames + 1))
            tokens, value = [], int(rng.integers(vocab))
            while len(tokens) < length:
                value = (value + int(rng.integers(1, 4))) % vocab
                tokens += [value] * int(rng.integers(2, 7))
            tokens = np.array(tokens[:length], dtype=np.int16)
            codes = np.stack(
                [(tokens.astype(np.int64) * (j + 3) + j) % codebook_size for j in range(n_codebooks)], axis=1
            )
            tokens_out.write(utt, tokens)
            codes_out.write(utt, codes.astype(np.int16))
    write_meta(root / "ssl_tokens", kind="ssl_tokens", n_clusters=vocab, frame_rate=50)
    write_meta(root / "acoustic_codes", kind="acoustic_codes", n_codebooks=n_codebooks, codebook_size=codebook_size)
    (root / "utt2spk").write_text("".join(f"{u} {u.split('_')[0]}\n" for u in sorted(utts)))
    return root
