"""Signal processing shared by scorers, reports and feature extractors (numpy; torch callers convert)."""

from __future__ import annotations

import numpy as np


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the HTK mel scale, each of unit area."""
    f_max = sample_rate / 2 if f_max is None else f_max
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (upper - lower))


def stft_power(wav: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """[frames, n_fft // 2 + 1] power spectrogram with a Hann window; short inputs are zero-padded."""
    wav = np.asarray(wav, dtype=np.float64)
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2


def log_mel_spectrogram(
    wav: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80
) -> np.ndarray:
    """[frames, n_mels] natural-log mel power spectrogram."""
    return np.log(stft_power(wav, n_fft, hop) @ mel_filterbank(sample_rate, n_fft, n_mels).T + 1e-10)
