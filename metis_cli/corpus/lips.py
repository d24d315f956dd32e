"""Mouth-region videos for the embedded corpus, rendered from its phone timings (lip-to-speech data).

A viseme model drives five articulatory parameters per frame: lip opening, mouth width, rounding
(protrusion: narrower, thicker lips), upper-teeth visibility and tongue visibility. Each phone has a target;
co-articulation blends the targets of neighbouring phones with dominance functions (Cohen & Massaro's
model: each phone pulls the trajectory towards its target with a weight that decays away from its centre,
bilabial closures and rounded vowels pulling hardest). Phones that share a viseme have the same target,
so they look alike, as on real lips (p/b/m, f/v, t/d/n/s/z, k/g/ng, ...): the task is learnable but
not trivial.

The renderer draws an 88x88 grayscale mouth crop at 25 fps (the LRS3 convention): skin with a per-speaker
tone and texture, lips as two half-ellipses around the oral cavity, teeth and tongue inside it; every
speaker has its own lip shape, thickness and tones; the head moves a little (shift, rotation, scale) and
the lighting drifts, frame by frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metis_cli.corpus.rng import rng_for
from metis_cli.data.datadir import TimedToken

FPS = 25
SIZE = 88

# phone -> (opening, width, rounding, teeth, tongue), each in [0, 1]; diphthongs are two targets.
_REST = (0.05, 0.5, 0.1, 0.0, 0.0)
_VISEMES = {
    "bilabial": (("p", "b", "m"), (0.0, 0.5, 0.15, 0.0, 0.0)),
    "labiodental": (("f", "v"), (0.12, 0.55, 0.1, 1.0, 0.0)),
    "dental": (("th", "dh"), (0.25, 0.55, 0.05, 0.8, 1.0)),
    "alveolar": (("t", "d", "n", "s", "z", "l"), (0.22, 0.6, 0.05, 0.7, 0.35)),
    "postalveolar": (("sh", "zh", "ch", "jh"), (0.28, 0.35, 0.75, 0.7, 0.1)),
    "velar": (("k", "g", "ng", "hh"), (0.35, 0.5, 0.1, 0.3, 0.2)),
    "r": (("r",), (0.28, 0.38, 0.6, 0.3, 0.1)),
    "w": (("w",), (0.12, 0.2, 1.0, 0.0, 0.0)),
    "y": (("y",), (0.2, 0.7, 0.0, 0.5, 0.2)),
    "iy": (("iy",), (0.28, 0.85, 0.0, 0.8, 0.2)),
    "ih": (("ih",), (0.35, 0.72, 0.0, 0.6, 0.2)),
    "eh": (("eh",), (0.48, 0.68, 0.0, 0.5, 0.25)),
    "ae": (("ae",), (0.68, 0.72, 0.0, 0.5, 0.3)),
    "aa": (("aa",), (0.9, 0.52, 0.1, 0.3, 0.3)),
    "ah": (("ah", "ax"), (0.52, 0.52, 0.1, 0.3, 0.25)),
    "ao": (("ao",), (0.72, 0.38, 0.65, 0.2, 0.2)),
    "ow": (("ow",), (0.5, 0.3, 0.85, 0.1, 0.1)),
    "uw": (("uw",), (0.22, 0.2, 1.0, 0.0, 0.0)),
    "uh": (("uh",), (0.35, 0.32, 0.7, 0.1, 0.1)),
    "er": (("er",), (0.35, 0.4, 0.55, 0.3, 0.1)),
}
TARGETS = {phone: target for phones, target in _VISEMES.values() for phone in phones}
DIPHTHONGS = {"ay": ("aa", "iy"), "aw": ("aa", "uw"), "ey": ("eh", "iy"), "oy": ("ao", "iy")}
VISEME_OF = {phone: name for name, (phones, _) in _VISEMES.items() for phone in phones}
# How hard a phone pulls its neighbours (per parameter: opening, width, rounding, teeth, tongue).
_DOMINANCE = {
    "bilabial": (3.0, 1.0, 1.0, 2.0, 1.0),
    "labiodental": (2.0, 1.0, 1.0, 3.0, 1.0),
    "w": (1.5, 2.5, 3.0, 1.0, 1.0),
    "uw": (1.0, 2.0, 2.5, 1.0, 1.0),
    "ow": (1.0, 2.0, 2.0, 1.0, 1.0),
    "postalveolar": (1.0, 1.5, 2.0, 1.0, 1.0),
}


@dataclass(frozen=True)
class LipStyle:
    """One speaker's face: mouth width and opening scales, lip thickness, tones, texture seed."""

    width: float
    opening: float
    thickness: float
    skin: float
    lip: float
    teeth: float
    texture_seed: int

    @classmethod
    def for_speaker(cls, speaker: str, seed: int = 0) -> "LipStyle":
        rng = rng_for(seed, "lips", speaker)
        skin = float(rng.uniform(105, 175))
        return cls(
            width=float(rng.uniform(0.85, 1.15)),
            opening=float(rng.uniform(0.8, 1.2)),
            thickness=float(rng.uniform(0.75, 1.35)),
            skin=skin,
            lip=skin - float(rng.uniform(25, 55)),
            teeth=float(rng.uniform(195, 240)),
            texture_seed=int(rng.integers(2**31)),
        )


def _targets(phones: list[TimedToken]) -> list[tuple[float, float, tuple, tuple]]:
    """(centre, half-duration, target, dominance) per articulatory target; diphthongs give two."""
    out = []
    for p in phones:
        name = p.token.lower().rstrip("012")
        parts = DIPHTHONGS.get(name, (name,))
        step = p.duration / len(parts)
        for i, part in enumerate(parts):
            target = TARGETS.get(part, _REST)
            dominance = _DOMINANCE.get(VISEME_OF.get(part, ""), (1.0,) * 5)
            if name in ("pau", "sil", "sp", ""):
                target, dominance = _REST, (0.6,) * 5
            out.append((p.start + (i + 0.5) * step, step / 2, target, dominance))
    return out


def articulation(phones: list[TimedToken], n_frames: int) -> np.ndarray:
    """[n_frames, 5] articulatory parameters at 25 fps from phone timings (dominance-blended targets)."""
    targets = _targets(phones) or [(0.0, 0.1, _REST, (1.0,) * 5)]
    times = (np.arange(n_frames) + 0.5) / FPS
    centres = np.array([t[0] for t in targets])
    spans = np.array([t[1] for t in targets]) + 0.04
    values = np.array([t[2] for t in targets])  # [n_targets, 5]
    strength = np.array([t[3] for t in targets])
    weight = (
        strength[None, :, :] * np.exp(-1.5 * ((times[:, None] - centres[None, :]) / spans[None, :]) ** 2)[:, :, None]
    )
    return (weight * values[None]).sum(axis=1) / np.maximum(weight.sum(axis=1), 1e-8)


def _smooth_walk(rng, n: int, scale: float, n_waves: int = 3) -> np.ndarray:
    """A slow random motion: a few low-frequency sinusoids with random phases."""
    t = np.arange(n) / FPS
    out = np.zeros(n)
    for _ in range(n_waves):
        out += math.sqrt(2 / n_waves) * np.sin(2 * math.pi * rng.uniform(0.1, 0.8) * t + rng.uniform(0, 2 * math.pi))
    return scale * out


def render_mouth(params: np.ndarray, style: LipStyle, seed: int = 0) -> np.ndarray:
    """[T, 88, 88] uint8 grayscale mouth crops from [T, 5] articulatory parameters."""
    n = len(params)
    rng = np.random.default_rng(seed)
    grid = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    y, x = np.meshgrid(grid, grid, indexing="ij")
    texture = np.random.default_rng(style.texture_seed).standard_normal((SIZE * 2, SIZE * 2))
    texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1) + np.roll(texture, (1, 1), (0, 1))) / 2
    shift_x, shift_y = _smooth_walk(rng, n, 0.05), _smooth_walk(rng, n, 0.04)
    angle, zoom = _smooth_walk(rng, n, math.radians(3)), 1 + _smooth_walk(rng, n, 0.03)
    light, tilt = 1 + _smooth_walk(rng, n, 0.08), _smooth_walk(rng, n, 0.1)
    frames = np.empty((n, SIZE, SIZE), np.uint8)
    for f, (opening, width, rounding, teeth, tongue) in enumerate(params):
        c, s = math.cos(angle[f]), math.sin(angle[f])
        u = (c * (x - shift_x[f]) + s * (y - shift_y[f])) / zoom[f]
        v = (-s * (x - shift_x[f]) + c * (y - shift_y[f])) / zoom[f] - 0.05
        half_width = 0.7 * style.width * (0.72 + 0.45 * width - 0.25 * rounding)
        half_open = 0.005 + 0.42 * style.opening * opening
        lip = 0.12 * style.thickness * (1 + 0.5 * rounding)
        upper, lower = half_open + lip, half_open + 1.25 * lip
        outer = (u / half_width) ** 2 + (v / np.where(v < 0, upper, lower)) ** 2
        inner = (u / (half_width * (0.86 - 0.25 * rounding))) ** 2 + (v / half_open) ** 2
        lips = 1 / (1 + np.exp(np.clip((outer - 1) / 0.06, -50, 50)))
        cavity = 1 / (1 + np.exp(np.clip((inner - 1) / 0.08, -50, 50))) * min(1.0, half_open / 0.02)
        teeth_band = (v < -half_open + 0.12) * teeth
        tongue_band = (v > half_open - 0.1 - 0.08 * tongue) * tongue
        skin_tex = texture[
            (np.clip((v + 1) * SIZE / 2, 0, SIZE - 1)).astype(int) + SIZE // 2,
            (np.clip((u + 1) * SIZE / 2, 0, SIZE - 1)).astype(int) + SIZE // 2,
        ]
        image = style.skin + 6 * skin_tex
        image = image * (1 - lips) + (style.lip + 4 * skin_tex) * lips
        inside = 28 * (1 - teeth_band - tongue_band).clip(0, 1) + style.teeth * teeth_band + 115 * tongue_band
        image = image * (1 - cavity) + inside * cavity
        image = image * light[f] * (1 + tilt[f] * x) + rng.normal(0, 2.0, image.shape)
        frames[f] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def n_video_frames(seconds: float) -> int:
    return max(1, int(round(seconds * FPS)))


def write_video(path, frames: np.ndarray, fps: int = FPS) -> Path:
    """Grayscale frames [T, H, W] uint8 as an H.264 mp4 (PyAV), written atomically."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray").reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    tmp.replace(path)
    return path


def render_utterance_video(
    path, phones: list[TimedToken], seconds: float, speaker: str, utt_id: str, seed: int = 0
) -> Path:
    """Renders one utterance's mouth video (kept if already there): as long as its audio, 25 fps."""
    path = Path(path)
    if path.is_file():
        return path
    style = LipStyle.for_speaker(speaker, seed)
    motion_seed = int(rng_for(seed, "lips-motion", utt_id).integers(2**31))
    return write_video(path, render_mouth(articulation(phones, n_video_frames(seconds)), style, motion_seed))


def write_corpus_videos(video_root, data_dirs, seed: int = 0, num_jobs: int = 2) -> dict[str, int]:
    """Mouth videos for every utterance of ``data_dirs`` (phones.ctm + utt2dur + utt2spk) under
    ``video_root/<speaker>/<utt>.mp4``, and each dir's ``video.scp``. Finished videos are kept, so a
    killed run resumes. Returns the number of videos per dir."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from metis_cli.data.datadir import DataDir, read_ctm
    from metis_cli.log import progress

    jobs, tables = {}, {}
    for data_dir in data_dirs:
        dd = DataDir(data_dir)
        phones, durations, speakers = read_ctm(dd.file("phones.ctm")), dd.read("utt2dur"), dd.utt2spk
        tables[dd] = {}
        for utt, speaker in speakers.items():
            path = Path(video_root) / speaker / f"{utt}.mp4"
            tables[dd][utt] = str(path.resolve())
            if not path.is_file():
                jobs[utt] = (path, phones.get(utt, []), float(durations[utt]), speaker, utt, seed)
    with progress() as bar:
        task = bar.add_task("rendering mouth videos", total=len(jobs))
        with ProcessPoolExecutor(max(1, num_jobs)) as pool:
            for future in as_completed([pool.submit(render_utterance_video, *args) for args in jobs.values()]):
                future.result()
                bar.advance(task)
    for dd, table in tables.items():
        dd.write("video.scp", table)
    return {str(dd.path): len(table) for dd, table in tables.items()}
