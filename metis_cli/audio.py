"""Audio I/O in one place: read anything soundfile reads, downmix to mono, resample with soxr, write wav/flac.

An audio *source* is what a ``wav.scp`` line holds after the utterance id: a file path, or a shell
command ending in ``|`` whose standard output is an audio file (Kaldi's pipe convention).
Every failure raises :class:`AudioError` naming the source and, when known, the utterance id.
"""
from __future__ import annotations

import io
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from metis_cli.errors import AudioError

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def is_pipe(source: str | os.PathLike) -> bool:
    return str(source).rstrip().endswith("|")


def _where(source, utt_id: str | None) -> str:
    return f"utterance '{utt_id}' ({source})" if utt_id else str(source)


def _open(source, utt_id: str | None):
    """Returns something soundfile can open: the path itself or the bytes a pipe printed."""
    if is_pipe(source):
        command = str(source).rstrip()[:-1]
        proc = subprocess.run(command, shell=True, capture_output=True)
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace").strip().splitlines()
            raise AudioError(
                f"{_where(source, utt_id)}: command failed with exit code {proc.returncode}"
                + (f": {stderr[-1]}" if stderr else "")
            )
        return io.BytesIO(proc.stdout)
    path = Path(source)
    if not path.is_file():
        raise AudioError(f"{_where(source, utt_id)}: audio file not found")
    return path


def audio_info(source, utt_id: str | None = None) -> AudioInfo:
    """Sample rate, channels and length from the header (pipes are run and read)."""
    try:
        info = sf.info(_open(source, utt_id))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"{_where(source, utt_id)}: cannot read audio header ({exc})") from None
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); 1-D or [time, channels]."""
    if orig_sr == target_sr:
        return wav
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    source,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    start: float = 0.0,
    end: float | None = None,
    utt_id: str | None = None,
) -> tuple[np.ndarray, int]:
    """Reads ``source`` as float32 in [-1, 1].

    ``mono`` averages the channels (shape [time]); otherwise the shape is [time, channels].
    ``sample_rate`` resamples to that rate (None keeps the file's). ``start``/``end`` (seconds) cut a
    segment, as Kaldi ``segments`` files do. Returns (samples, sample_rate).
    """
    handle = _open(source, utt_id)
    try:
        with sf.SoundFile(handle) as f:
            file_sr = int(f.samplerate)
            first = int(round(start * file_sr))
            if first > f.frames:
                raise AudioError(
                    f"{_where(source, utt_id)}: segment starts at {start:.2f} s, after the end "
                    f"of the audio ({f.frames / file_sr:.2f} s)"
                )
            f.seek(first)
            count = -1 if end is None else max(0, int(round(end * file_sr)) - first)
            wav = f.read(frames=count, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"{_where(source, utt_id)}: cannot decode audio ({exc})") from None
    if wav.shape[0] == 0:
        raise AudioError(f"{_where(source, utt_id)}: audio is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(f"{_where(source, utt_id)}: audio contains NaN or infinite samples")
    if mono:
        wav = wav.mean(axis=1)
    if sample_rate is not None and sample_rate != file_sr:
        wav = resample(wav, file_sr, sample_rate)
        file_sr = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), file_sr


def save_audio(path, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Writes ``wav`` ([time] or [time, channels], float in [-1, 1]) as .wav or .flac, atomically.

    Samples outside [-1, 1] are clipped (16-bit PCM would wrap them around). Returns the path.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: cannot write '{path.suffix}' files; use one of {', '.join(WRITE_FORMATS)}")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        raise AudioError(f"{path}: refusing to write empty audio")
    wav = np.clip(wav, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so that a killed job never leaves a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, wav, sample_rate, subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
