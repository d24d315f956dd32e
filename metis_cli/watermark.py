"""A keyed, inaudible watermark on every waveform the toolkit generates, and its detector.

Method: a keyed spectral ripple that breathes (classical spread spectrum in the log-magnitude STFT
domain). The key draws a random sign for each 31.25 Hz frequency cell. Every STFT frame is multiplied by
the gains ``10 ** (strength_db * sign * cos(2 pi f_mod t) / 20)``: a fine random equaliser ripple of
±2.2 dB whose depth swings at f_mod = 8 Hz, then resynthesised by weighted overlap-add. Cells between 250
and 3750 Hz carry the detection pattern; cells between 3750 and 7250 Hz carry the payload (each bit flips
the signs of its 7 cells).

Why this design: the ripple is the same pattern in every frame, only its depth swings, so detection needs
no synchronisation (the swing's phase is measured, not assumed): it survives cropping, time shifts and
concatenation with unmarked audio. It lives below 3.75 kHz, so it survives resampling to 8 kHz, lossy
codecs and band-limited decoders. A gain change is a constant in the log domain. Speech's own fine
spectral structure is nearly static over a few frames (a steady pitch's harmonics): a static pattern would
compete with it, while an 8 Hz swing sits where that structure has little energy.

Detection: resample to 16 kHz, take the log-magnitude STFT of the active frames, subtract each frame's
spectral envelope (±125 Hz moving average) and each bin's mean over time, weight each bin by the inverse
of its spread and each time-frequency cell by the share of its power above the bin's stationary noise
floor (added noise drowns the ripple where it dominates), and take the 8 Hz Fourier coefficient of every
cell over time under a Tukey taper (``M``). The score is
``|p·M|²`` for the key's signs ``p``, divided by its mean over the other circular shifts of ``p``
(patterns with the same structure but unrelated to the mark): without the watermark it is about
exponential with mean 1, so ``p_value = exp(-score)``. A bit is the sign of its cells' coefficient in the
phase of the detection pattern's.

Limits (the price of a classical method): someone who averages the spectra of many marked files can
estimate the ripple and invert it; the key is a shared secret, not a signature; noise 10 dB below the
speech drowns it on short clips. Learned watermarks (AudioSeal, WavMark) resist more attacks but need
trained weights that cannot be downloaded here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)

KEY_ENV = "METIS_WATERMARK_KEY"
DEFAULT_KEY = "metis-open-watermark"  # documented, public: anyone can check a file made with the defaults
TOOLKIT_ID = 0x4D  # 'M': the first payload byte of files written by this toolkit
DETECT_RATE = 16000
BIN_HZ = 15.625  # STFT bin width at every rate: n_fft 1024 at 16 kHz
CELL_BINS = 2  # a cell is 31.25 Hz
SYNC_HZ = (250.0, 3750.0)  # detection pattern: survives 8 kHz resampling
PAYLOAD_HZ = (3750.0, 7250.0)  # payload bits: needs the 16 kHz band
ENVELOPE_BINS = 8  # the envelope is the mean over ±8 bins (±125 Hz)
MIN_ACTIVE_SECONDS = 0.75  # shorter active audio gets no verdict
NOISE_SMOOTH = (3, 5)  # frames x bins over which power is averaged before comparing it with the noise floor
NOISE_FLOOR_PERCENTILE = 10  # the stationary noise floor of a bin: this percentile of its smoothed power
TAPER_ALPHA = 0.25  # Tukey taper of the 8 Hz Fourier sum: flat in the middle, so every frame counts


@dataclass(frozen=True)
class WatermarkConfig:
    key: str = DEFAULT_KEY
    strength_db: float = 2.2  # ripple depth per cell at the swing's peak (PESQ-WB 4.34 on mini_test)
    modulation_hz: float = 8.0  # how fast the ripple's depth swings
    n_bits: int = 16
    threshold_p: float = 1e-3  # detected when the p-value is below this (the false-alarm probability)


def resolve_key(key: str | None = None) -> str:
    """The key to use: given, else $METIS_WATERMARK_KEY, else the documented default."""
    return key or os.environ.get(KEY_ENV) or DEFAULT_KEY


def payload_for(model_name: str) -> int:
    """16-bit payload: the toolkit id, then a byte identifying the model (a hash of its name)."""
    model_byte = hashlib.sha256(model_name.encode()).digest()[0]
    return (TOOLKIT_ID << 8) | model_byte


def key_id(key: str) -> str:
    """What decode.json records about the key: 'default', or a fingerprint (never the key itself)."""
    return "default" if key == DEFAULT_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Marker:
    """Marks every waveform a decoder writes with one payload; ``info`` goes into decode.json."""

    config: WatermarkConfig
    payload: int

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return embed(wav, sample_rate, self.payload, self.config)

    @property
    def info(self) -> dict:
        return {
            "method": "keyed spectral ripple",
            "key": key_id(self.config.key),
            "payload": f"{self.payload:04x}",
            "strength_db": self.config.strength_db,
        }


def marker_for(model_name: str, enabled: bool = True, key: str | None = None) -> Marker | None:
    """The marker for a model's outputs (payload: toolkit id + model byte), or None with a warning."""
    if not enabled:
        logger.warning(
            "watermarking is off: these outputs cannot later be told apart from real recordings by metis detect"
        )
        return None
    return Marker(WatermarkConfig(key=resolve_key(key)), payload_for(model_name))


def _band_cells(band: tuple[float, float]) -> int:
    return int(round((band[1] - band[0]) / (BIN_HZ * CELL_BINS)))


def key_pattern(key: str, n_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sync signs, payload signs, bit index of each payload cell), drawn from the key; signs are ±1."""
    n_payload = _band_cells(PAYLOAD_HZ)
    if n_bits < 1 or n_bits > n_payload // 4:
        raise MetisError(f"watermark: n_bits must be between 1 and {n_payload // 4}, got {n_bits}")
    seed = int.from_bytes(hashlib.sha256(f"metis-watermark:{key}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    sync = rng.choice([-1.0, 1.0], size=_band_cells(SYNC_HZ))
    payload = rng.choice([-1.0, 1.0], size=n_payload)
    bit_of = rng.permutation(np.arange(n_payload) % n_bits)
    return sync, payload, bit_of


def _payload_bits(payload: int, n_bits: int) -> np.ndarray:
    if payload < 0 or payload >= 2**n_bits:
        raise MetisError(f"watermark: payload {payload} does not fit in {n_bits} bits")
    return np.array([(payload >> (n_bits - 1 - j)) & 1 for j in range(n_bits)])


def _stft_setup(sample_rate: int) -> tuple[int, int, np.ndarray]:
    n_fft = int(round(sample_rate / BIN_HZ / 2)) * 2
    return n_fft, n_fft // 4, np.hanning(n_fft + 1)[:-1]


def _frames(wav: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the zero-padded signal and the time (s) of each frame's centre."""
    padded = np.pad(wav, (n_fft, n_fft + hop))
    count = 1 + (len(padded) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return padded[index], (np.arange(count) * hop - n_fft // 2)


def _cells(freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """The cell index of each frequency inside ``band``, -1 outside."""
    cells = np.floor((freqs - band[0]) / (BIN_HZ * CELL_BINS)).astype(int)
    cells[(freqs < band[0]) | (freqs >= band[1])] = -1
    return cells


def embed(wav: np.ndarray, sample_rate: int, payload: int = 0, config: WatermarkConfig | None = None) -> np.ndarray:
    """The marked waveform: same length and rate, float32. Silence stays silence (the mark is a filter)."""
    config = config or WatermarkConfig()
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise MetisError(f"watermark: expected mono audio, got shape {wav.shape}")
    if sample_rate < 2 * PAYLOAD_HZ[1] + 1000:
        raise MetisError(f"watermark: sample rate {sample_rate} Hz is too low; the mark needs 16 kHz or more")
    if len(wav) == 0:
        return wav.astype(np.float32)
    sync, payload_signs, bit_of = key_pattern(config.key, config.n_bits)
    payload_signs = payload_signs * (1.0 - 2.0 * _payload_bits(payload, config.n_bits)[bit_of])  # bit 1 flips
    n_fft, hop, window = _stft_setup(sample_rate)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    ripple = np.zeros(len(freqs))
    for band, signs in ((SYNC_HZ, sync), (PAYLOAD_HZ, payload_signs)):
        cells = _cells(freqs, band)
        ripple[cells >= 0] = signs[cells[cells >= 0]]
    frames, centres = _frames(wav, n_fft, hop)
    swing = np.cos(2 * np.pi * config.modulation_hz * centres / sample_rate)
    gains = 10.0 ** (config.strength_db * swing[:, None] * ripple[None, :] / 20.0)
    out_frames = np.fft.irfft(np.fft.rfft(frames * window, axis=1) * gains, n=n_fft, axis=1) * window
    length = (len(out_frames) - 1) * hop + n_fft
    starts = (np.arange(len(out_frames)) * hop)[:, None] + np.arange(n_fft)[None, :]
    out = np.bincount(starts.ravel(), weights=out_frames.ravel(), minlength=length)  # weighted overlap-add
    norm = np.bincount(starts.ravel(), weights=np.broadcast_to(window**2, out_frames.shape).ravel(), minlength=length)
    span = slice(n_fft, n_fft + len(wav))
    return (out[span] / np.maximum(norm[span], 1e-8)).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    score: float | None  # about exponential with mean 1 without the watermark
    p_value: float | None  # false-alarm probability of a score this high
    detected: bool | None  # None: too little active audio for a verdict
    payload: int | None  # None when there is no verdict or the payload band is gone (e.g. 8 kHz audio)
    bit_confidence: float | None  # the weakest bit's |coefficient| over its noise level
    active_seconds: float
    reason: str = ""

    @property
    def verdict(self) -> str:
        return "no verdict" if self.detected is None else ("yes" if self.detected else "no")


def _box_smooth(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Moving average over ``size`` (frames, bins), edges repeated."""
    for axis, width in enumerate(size):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (width // 2, width - 1 - width // 2)
        sums = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis)
        sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
        x = (
            np.take(sums, np.arange(width, sums.shape[axis]), axis=axis)
            - np.take(sums, np.arange(0, sums.shape[axis] - width), axis=axis)
        ) / width
    return x


def _tukey(n: int, alpha: float) -> np.ndarray:
    """A window flat in the middle with cosine tapers over ``alpha`` of its length."""
    if n < 2 or alpha <= 0:
        return np.ones(n)
    x = np.arange(n) / (n - 1)
    edge = alpha / 2
    w = np.ones(n)
    rising, falling = x < edge, x > 1 - edge
    w[rising] = 0.5 * (1 + np.cos(np.pi * (x[rising] / edge - 1)))
    w[falling] = 0.5 * (1 + np.cos(np.pi * ((1 - x[falling]) / edge - 1)))
    return w


def _modulation(wav: np.ndarray, sample_rate: int, config: WatermarkConfig) -> tuple[dict, float]:
    """Per band: the complex f_mod coefficient of every cell's (weighted) log-magnitude residual, and
    whether the band holds energy; plus the seconds of active audio."""
    from metis_cli.audio import resample

    wav = np.asarray(wav, dtype=np.float32)
    if sample_rate != DETECT_RATE:
        wav = resample(wav, sample_rate, DETECT_RATE)
    n_fft, hop, window = _stft_setup(DETECT_RATE)
    frames, centres = _frames(wav.astype(np.float64), n_fft, hop)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / DETECT_RATE)
    sync_bins = (freqs >= SYNC_HZ[0]) & (freqs < SYNC_HZ[1])
    energy_db = 10 * np.log10(power[:, sync_bins].mean(axis=1) + 1e-20)
    active = (energy_db > energy_db.max() - 45.0) & (energy_db > -100.0)
    active_seconds = float(active.sum() * hop / DETECT_RATE)
    out = {}
    if active.sum() < 4:
        return out, active_seconds
    log_power = 10 * np.log10(power[active] + 1e-12)
    # (the bands stay more than ENVELOPE_BINS from 0 Hz and Nyquist, so the edges' padding never matters)
    residual = log_power - _box_smooth(log_power, (1, 2 * ENVELOPE_BINS + 1))
    # Each time-frequency cell counts by the share of its power above the stationary noise floor: where
    # added noise dominates, the log-magnitude no longer follows the ripple (clean audio: weights ~1).
    smooth = _box_smooth(power, NOISE_SMOOTH)
    floor = np.percentile(smooth, NOISE_FLOOR_PERCENTILE, axis=0)
    weight = np.clip(1.0 - floor[None, :] / np.maximum(smooth[active], 1e-20), 0.0, 1.0)
    total = np.maximum(weight.sum(axis=0), 1e-9)
    residual -= (weight * residual).sum(axis=0) / total
    spread = np.sqrt(np.maximum((weight * residual**2).sum(axis=0) / total, 1e-6))
    times = centres[active] / DETECT_RATE
    phasor = _tukey(len(times), TAPER_ALPHA) * np.exp(-2j * np.pi * config.modulation_hz * times)
    coefficient = (phasor[:, None] * weight * residual).sum(axis=0) / spread / np.sqrt(total / len(times))
    for name, band in (("sync", SYNC_HZ), ("payload", PAYLOAD_HZ)):
        cells = _cells(freqs, band)
        inside = cells >= 0
        per_cell = np.bincount(
            cells[inside], weights=coefficient[inside].real, minlength=_band_cells(band)
        ) + 1j * np.bincount(cells[inside], weights=coefficient[inside].imag, minlength=_band_cells(band))
        band_db = 10 * np.log10(power[active][:, inside].mean() + 1e-20)
        out[name] = (per_cell, band_db > energy_db[active].mean() - 40.0)
    return out, active_seconds


def detect(wav: np.ndarray, sample_rate: int, config: WatermarkConfig | None = None) -> Detection:
    """Looks for the key's watermark; a wrong key scores like unmarked audio (not an error)."""
    config = config or WatermarkConfig()
    wav = np.asarray(wav)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    bands, active_seconds = _modulation(wav, sample_rate, config)
    if active_seconds < MIN_ACTIVE_SECONDS:
        return Detection(
            None,
            None,
            None,
            None,
            None,
            active_seconds,
            f"only {active_seconds:.2f} s of active audio; a verdict needs {MIN_ACTIVE_SECONDS} s",
        )
    sync, payload_signs, bit_of = key_pattern(config.key, config.n_bits)
    m, _ = bands["sync"]
    # The key's correlation and the same pattern's correlation at every other circular shift (the null).
    spectrum = np.fft.fft(m) * np.conj(np.fft.fft(sync))
    shifted = np.fft.ifft(spectrum)  # shifted[s] = sum_c m[c] sync[c - s]
    energies = np.abs(shifted) ** 2
    score = float(energies[0] / max(energies[1:].mean(), 1e-20))
    p_value = float(math.exp(-score))
    reference = shifted[0] / max(abs(shifted[0]), 1e-20)  # the swing's phase as the sync cells saw it
    payload = confidence = None
    m_payload, has_band = bands["payload"]
    if has_band:
        projected = (np.conj(reference) * m_payload).real * payload_signs
        noise = np.sqrt(np.bincount(bit_of, weights=np.abs(m_payload) ** 2, minlength=config.n_bits) / 2)
        per_bit = np.bincount(bit_of, weights=projected, minlength=config.n_bits) / np.maximum(noise, 1e-20)
        payload = int("".join("1" if z < 0 else "0" for z in per_bit), 2)
        confidence = float(np.abs(per_bit).min())
    return Detection(score, p_value, p_value < config.threshold_p, payload, confidence, active_seconds)


def detect_sources(
    sources: dict[str, str], config: WatermarkConfig | None = None, commands: frozenset = frozenset()
) -> list[dict]:
    """One row per audio source (name -> path; a Kaldi pipe for the names in ``commands``, wav.scp entries):
    the detection, or the error reading it."""
    from metis_cli.audio import load_audio
    from metis_cli.errors import AudioError

    config = config or WatermarkConfig()
    rows = []
    for name, source in sources.items():
        row = {
            "name": name,
            "seconds": None,
            "score": None,
            "p_value": None,
            "watermarked": None,
            "payload": None,
            "weakest_bit": None,
            "note": "",
        }
        try:
            wav, rate = load_audio(source, commands=name in commands)
        except AudioError as exc:
            rows.append({**row, "watermarked": "error", "note": str(exc)})
            continue
        found = detect(wav, rate, config)
        payload = (
            f"{found.payload:04x}" if found.detected and found.payload is not None else None
        )  # only a found mark has one
        note = found.reason or (
            "no payload band (audio below 16 kHz?)" if found.detected and found.payload is None else ""
        )
        rows.append(
            {
                **row,
                "seconds": len(wav) / rate,
                "score": found.score,
                "p_value": found.p_value,
                "watermarked": found.verdict,
                "payload": payload,
                "weakest_bit": found.bit_confidence if payload else None,
                "note": note,
            }
        )
    return rows
