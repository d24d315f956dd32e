"""Video input for lip-to-speech: mouth-crop videos (mp4, avi, mkv, ... through PyAV) or pre-computed
visual features (``.npy``, one row per video frame at 25 fps, any dimension, e.g. AV-HuBERT's).

Every failure raises :class:`VideoError` naming the file (and the utterance when known).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metis_cli.errors import MetisError

FPS = 25
MIN_CROP, MAX_CROP = 32, 160  # a mouth crop, not a whole frame (LRS3's are 88-96 px)
CONVERTIBLE_FPS = (20.0, 30.5)  # 24, 25, 29.97 and 30 fps are resampled to 25; anything else is refused


class VideoError(MetisError):
    pass


def _where(source, utt_id: str | None) -> str:
    return f"utterance '{utt_id}' ({source})" if utt_id else str(source)


def read_video(source, utt_id: str | None = None) -> np.ndarray:
    """Grayscale frames [T, H, W] uint8 at 25 fps (nearest-frame conversion from 20-30 fps)."""
    import av

    path = Path(source)
    where = _where(source, utt_id)
    if not path.is_file():
        raise VideoError(f"{where}: video file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{where}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    except av.FFmpegError as exc:
        raise VideoError(f"{where}: cannot decode the video ({exc})") from None
    if not frames:
        raise VideoError(f"{where}: the video has no frames")
    height, width = frames[0].shape
    if not (MIN_CROP <= height <= MAX_CROP and MIN_CROP <= width <= MAX_CROP and 0.7 <= width / height <= 1.4):
        raise VideoError(
            f"{where}: frames of {width}x{height} are not a mouth crop (expected a roughly square crop of "
            f"{MIN_CROP}-{MAX_CROP} px, e.g. 88x88 as in LRS3); crop the mouth region first"
        )
    if not (CONVERTIBLE_FPS[0] <= rate <= CONVERTIBLE_FPS[1]):
        raise VideoError(
            f"{where}: {rate:.2f} fps is far from 25 fps; convert it first (ffmpeg -i in.mp4 -r 25 out.mp4)"
        )
    video = np.stack(frames)
    if abs(rate - FPS) > 0.01:
        n_out = max(1, int(round(len(video) * FPS / rate)))
        video = video[np.minimum((np.arange(n_out) * rate / FPS).round().astype(int), len(video) - 1)]
    return video


def read_visual_features(source, utt_id: str | None = None) -> np.ndarray:
    """Pre-computed features [T, D] float32 at 25 fps from a ``.npy`` file."""
    path = Path(source)
    where = _where(source, utt_id)
    if not path.is_file():
        raise VideoError(f"{where}: feature file not found")
    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise VideoError(f"{where}: not a readable .npy array ({exc})") from None
    if feats.ndim != 2 or len(feats) == 0 or not np.issubdtype(feats.dtype, np.number):
        raise VideoError(
            f"{where}: expected a numeric [frames, dim] array at 25 fps, got shape {feats.shape} ({feats.dtype})"
        )
    if not np.isfinite(feats).all():
        raise VideoError(f"{where}: the features hold NaN or infinite values")
    return feats.astype(np.float32)


def read_visual_input(source, features: bool, utt_id: str | None = None) -> np.ndarray:
    """L2S input: pre-computed features (``features``: a .npy file) or mouth video frames."""
    return read_visual_features(source, utt_id) if features else read_video(source, utt_id)


def check_alignment(n_video_frames: int, audio_seconds: float, where: str, tolerance_s: float = 0.2) -> None:
    """Video and audio of one utterance must cover the same time (within ``tolerance_s``)."""
    video_seconds = n_video_frames / FPS
    if abs(video_seconds - audio_seconds) > tolerance_s:
        raise VideoError(
            f"{where}: the video lasts {video_seconds:.2f} s but the audio {audio_seconds:.2f} s; they must cover "
            "the same speech"
        )
