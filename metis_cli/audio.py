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
from metis_cli.files import umask_mode, write_failure

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


def _open(source, utt_id: str | None, commands: bool = False):
    """Returns something soundfile can open: the path itself or the bytes a pipe printed. A source ending in
    ``|`` is a shell command (Kaldi's convention), run only where ``commands`` allows it: entries of a data
    dir's audio scp files, never a path given on the command line or found in any other file."""
    if is_pipe(source) and not commands:
        raise AudioError(
            f"{_where(source, utt_id)}: a path ending in '|' is a shell command, which only wav.scp "
            f"entries may be; give an audio file (or put the command in a wav.scp)"
        )
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


def _wav_shortfall(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file whose data chunk is cut short: (samples its header promises, samples it holds);
    None otherwise. libsndfile quietly reads what is there, so a copy killed halfway would pass for whole."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                    continue
                if chunk[:4] == b"data":
                    held = os.fstat(f.fileno()).st_size - f.tell()
                    # 0 or 0xFFFFFFFF: a streamed header that never learned the length
                    if block_align and size not in (0, 0xFFFFFFFF) and held < size:
                        return size // block_align, held // block_align
                    return None
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def _check_complete(source, utt_id: str | None) -> None:
    if is_pipe(source):
        return
    short = _wav_shortfall(Path(source))
    if short:
        raise AudioError(
            f"{_where(source, utt_id)}: truncated: the header promises {short[0]} samples, the file holds "
            f"{short[1]}; copy or re-encode it again"
        )


def audio_info(source, utt_id: str | None = None, commands: bool = False) -> AudioInfo:
    """Sample rate, channels and length from the header (pipes, where ``commands`` allows them, are run and read)."""
    handle = _open(source, utt_id, commands)
    _check_complete(source, utt_id)
    try:
        info = sf.info(handle)
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
    commands: bool = False,
) -> tuple[np.ndarray, int]:
    """Reads ``source`` as float32 in [-1, 1].

    ``mono`` averages the channels (shape [time]); otherwise the shape is [time, channels].
    ``sample_rate`` resamples to that rate (None keeps the file's). ``start``/``end`` (seconds) cut a
    segment, as Kaldi ``segments`` files do. ``commands``: ``source`` may be a shell command ending in ``|``
    (pass it for entries of a data dir's scp files only). Returns (samples, sample_rate).
    """
    handle = _open(source, utt_id, commands)
    _check_complete(source, utt_id)
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
            promised = f.frames - first if count < 0 else min(count, f.frames - first)
            if wav.shape[0] < promised:  # e.g. a FLAC whose stream info promises more than its frames hold
                raise AudioError(
                    f"{_where(source, utt_id)}: truncated: the header promises {f.frames} samples, "
                    f"{first + wav.shape[0]} could be read; copy or re-encode it again"
                )
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
    os.fchmod(fd, umask_mode())
    os.close(fd)
    try:
        sf.write(tmp, wav, sample_rate, subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors; a full disk, a read-only folder
        Path(tmp).unlink(missing_ok=True)
        raise AudioError(write_failure(path, exc)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
