"""Synthetic noises, room reverberation and mixing at a given SNR, for the SE and TSE sets.

Everything is generated from a numpy Generator, so a seed fixes the result. The same functions serve
training-time augmentation later (SE adds noise and reverb on the fly).
"""

from __future__ import annotations

import numpy as np

NOISE_TYPES = ("white", "pink", "brown", "babble", "hum", "clicks")


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return noise - noise.mean()


def _hum(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and a few harmonics of random strength, plus a little hiss."""
    base = rng.choice([50.0, 60.0])
    t = np.arange(n) / sample_rate
    hum = sum(
        rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 6)
    )
    return hum + 0.05 * rng.standard_normal(n)


def _clicks(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Sparse decaying impulses (keyboard, crackle), 3-15 per second."""
    noise = 0.01 * rng.standard_normal(n)
    count = max(1, int(rng.uniform(3, 15) * n / sample_rate))
    length = int(0.004 * sample_rate)
    decay = np.exp(-np.arange(length) / (0.0008 * sample_rate))
    for pos in rng.integers(0, max(1, n - length), count):
        noise[pos : pos + length] += rng.uniform(0.3, 1.0) * rng.choice([-1, 1]) * decay * rng.standard_normal(length)
    return noise


def random_excerpt(rng: np.random.Generator, wav: np.ndarray, n: int) -> np.ndarray:
    """n samples of ``wav`` looped, starting at a random offset."""
    offset = rng.integers(0, len(wav))
    return np.resize(wav, n + len(wav))[offset : offset + n]


def babble(rng: np.random.Generator, n: int, talkers: list[np.ndarray]) -> np.ndarray:
    """Several other talkers summed at equal level, each a random excerpt of length n."""
    if not talkers:
        raise ValueError("babble needs at least one other talker")
    out = np.zeros(n)
    for wav in talkers:
        segment = random_excerpt(rng, wav, n)
        out += segment / (np.sqrt(np.mean(segment**2)) + 1e-8)
    return out


def make_noise(
    kind: str, rng: np.random.Generator, n: int, sample_rate: int, talkers: list[np.ndarray] | None = None
) -> np.ndarray:
    """n samples of noise of the given kind (one of NOISE_TYPES), not yet scaled."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return _colored(rng, n, 1.0)
    if kind == "brown":
        return _colored(rng, n, 2.0)
    if kind == "babble":
        return babble(rng, n, talkers or [])
    if kind == "hum":
        return _hum(rng, n, sample_rate)
    if kind == "clicks":
        return _clicks(rng, n, sample_rate)
    raise ValueError(f"unknown noise type '{kind}'; choose from {', '.join(NOISE_TYPES)}")


def room_impulse_response(rng: np.random.Generator, rt60: float, sample_rate: int) -> np.ndarray:
    """A synthetic room: direct path, then exponentially decaying noise reaching -60 dB at rt60 seconds."""
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60)
    pre_delay = int(0.002 * sample_rate)
    tail[:pre_delay] = 0.0
    rir = 0.4 * tail
    rir[0] = 1.0
    return rir / np.sqrt(np.sum(rir**2))


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolves and keeps the input length (the tail past the end is cut)."""
    from scipy.signal import fftconvolve

    return fftconvolve(wav, rir)[: len(wav)]


def power(wav: np.ndarray) -> float:
    return float(np.mean(np.square(wav, dtype=np.float64))) + 1e-12


def scale_to_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """The noise scaled so that 10 log10(P_signal / P_noise) equals snr_db."""
    return noise * np.sqrt(power(signal) / (power(noise) * 10 ** (snr_db / 10)))


def peak_limit(*signals: np.ndarray, peak: float = 0.95) -> float:
    """The gain (<= 1) that keeps the loudest of ``signals`` at or under ``peak``."""
    loudest = max(float(np.max(np.abs(s))) for s in signals)
    return min(1.0, peak / loudest) if loudest > 0 else 1.0
