"""On-the-fly training inputs for the audio-conditioned tasks: what the model hears instead of the clean
target, drawn anew for every batch from a numpy Generator (so a seed reproduces an epoch exactly).

- SE: the clean speech, maybe reverberant (a synthetic room, probability ``reverb_prob``), plus noise of
  a random kind at a random SNR; the target stays the dry clean speech (denoise and dereverberate).
- TSE: the target plus another speaker's speech at a random signal-to-interference ratio.
- VC: the target with its timbre changed (pitch shift, then a warp of the spectral envelope that moves
  the formants as a longer or shorter vocal tract would), so that the model learns to put back the voice
  of the prompt. The duration never changes: the condition stays frame-aligned with the target. How the
  pitch moves is ``pitch_shift``: ``phase_vocoder`` (librosa: time stretch, then resampling), ``world``
  (WORLD analysis, F0 scaled, resynthesis) or ``none`` (formants only); docs/condition_tokens.md measures
  what each leaves of the content (the SSL tokens of the clean speech).

Noise, rooms and mixing come from metis_cli.corpus.noise, the functions the embedded test sets were made
with; the utterances, draws and levels differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metis_cli.config import check_keys
from metis_cli.corpus import noise
from metis_cli.errors import MetisError

PITCH_SHIFTS = ("phase_vocoder", "world", "none")
BABBLE_TALKERS = 3  # SE: other utterances mixed into babble noise


@dataclass
class AugmentConfig:
    snr_db: tuple[float, float] = (-5.0, 20.0)  # SE
    reverb_prob: float = 0.5  # SE
    rt60: tuple[float, float] = (0.2, 0.8)  # SE
    noise_types: tuple[str, ...] = noise.NOISE_TYPES  # SE
    sir_db: tuple[float, float] = (-5.0, 5.0)  # TSE
    pitch_semitones: tuple[float, float] = (-4.0, 4.0)  # VC
    formant_ratio: tuple[float, float] = (0.85, 1.18)  # VC: envelope frequency scale (log-uniform)
    pitch_shift: str = "phase_vocoder"  # VC: phase_vocoder, world or none (PITCH_SHIFTS)

    def __post_init__(self):
        if self.pitch_shift not in PITCH_SHIFTS:
            raise MetisError(f"augment.pitch_shift: {self.pitch_shift!r} is not one of {', '.join(PITCH_SHIFTS)}")

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        check_keys(d, cls, "augment config")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def add_noise_and_reverb(
    clean: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sample_rate: int, talkers: list[np.ndarray] = ()
) -> np.ndarray:
    """SE input: (reverberant) speech plus scaled noise. Babble needs ``talkers`` (other utterances)."""
    kinds = [k for k in cfg.noise_types if k != "babble" or talkers]
    if not kinds:
        raise MetisError("babble noise needs other utterances to mix (talkers); add another noise type or more data")
    kind = kinds[rng.integers(len(kinds))]
    speech = clean.astype(np.float64)
    if rng.random() < cfg.reverb_prob:
        speech = noise.reverberate(speech, noise.room_impulse_response(rng, float(rng.uniform(*cfg.rt60)), sample_rate))
    snr = float(rng.uniform(*cfg.snr_db))
    noisy = speech + noise.scale_to_snr(clean, noise.make_noise(kind, rng, len(clean), sample_rate, list(talkers)), snr)
    return (noisy * noise.peak_limit(noisy)).astype(np.float32)


def mix_interferer(
    target: np.ndarray, interferer: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """TSE input: the target plus a random excerpt of the interferer at a random SIR."""
    other = noise.random_excerpt(rng, interferer.astype(np.float64), len(target))
    mixture = target + noise.scale_to_snr(target, other, float(rng.uniform(*cfg.sir_db)))
    return (mixture * noise.peak_limit(mixture)).astype(np.float32)


def _envelope(log_mag: np.ndarray, lifter: int) -> np.ndarray:
    """Smooth log spectral envelope per frame (cepstral liftering) of log magnitudes [frames, bins]."""
    cep = np.fft.irfft(log_mag, axis=1)
    cep[:, lifter:-lifter] = 0.0
    return np.fft.rfft(cep, axis=1).real[:, : log_mag.shape[1]]


def warp_formants(wav: np.ndarray, ratio: float, sample_rate: int, n_fft: int = 1024, lifter: int = 30) -> np.ndarray:
    """Moves the spectral envelope's frequencies by ``ratio`` (>1: a shorter vocal tract), keeping the
    harmonics, the phase and the length: each STFT frame is multiplied by envelope(f / ratio) / envelope(f)."""
    import librosa

    hop = n_fft // 4
    spec = librosa.stft(wav.astype(np.float32), n_fft=n_fft, hop_length=hop)
    log_mag = np.log(np.abs(spec).T + 1e-6)  # [frames, bins]
    env = _envelope(log_mag, lifter)
    bins = np.arange(env.shape[1])
    warped = np.stack([np.interp(bins / ratio, bins, frame) for frame in env])
    gain = np.exp(np.clip(warped - env, -6.0, 6.0)).T
    return librosa.istft(spec * gain, hop_length=hop, length=len(wav)).astype(np.float32)


def world_pitch_shift(wav: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    """``wav`` resynthesised by WORLD (DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity on a 5 ms
    grid) with its F0 scaled by 2**(semitones/12); the envelope, so the formants, stay. Same length."""
    from metis_cli.codec.world import import_world

    pyworld, _ = import_world()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    sp = pyworld.cheaptrick(x, f0, times, sample_rate)
    ap = pyworld.d4c(x, f0, times, sample_rate)
    out = pyworld.synthesize(f0 * 2 ** (semitones / 12), sp, ap, sample_rate, frame_period=5.0)
    out = np.pad(out, (0, max(0, len(wav) - len(out))))[: len(wav)]
    return np.nan_to_num(out).astype(np.float32)


def shift_pitch(wav: np.ndarray, semitones: float, sample_rate: int, method: str) -> tuple[np.ndarray, float]:
    """(audio, how far its spectral envelope moved as a frequency ratio) after a pitch shift by ``method``."""
    if method == "none" or semitones == 0.0:
        return wav, 1.0
    if method == "world":
        return world_pitch_shift(wav, semitones, sample_rate), 1.0
    import librosa

    # resampling moves the envelope with the harmonics
    return librosa.effects.pitch_shift(wav, sr=sample_rate, n_steps=semitones), 2 ** (semitones / 12)


def perturb_timbre(wav: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sample_rate: int) -> np.ndarray:
    """VC source: pitch shifted by a random number of semitones (by ``cfg.pitch_shift``'s method; ``none``
    draws the number and leaves the pitch), formants moved by a random ratio; same length."""
    semitones = float(rng.uniform(*cfg.pitch_semitones))
    low, high = np.log(cfg.formant_ratio[0]), np.log(cfg.formant_ratio[1])
    formant = float(np.exp(rng.uniform(low, high)))
    shifted, moved = shift_pitch(wav.astype(np.float32), semitones, sample_rate, cfg.pitch_shift)
    out = warp_formants(shifted, formant / moved, sample_rate)  # the rest of the way to the drawn ratio
    return (out * noise.peak_limit(out)).astype(np.float32)
