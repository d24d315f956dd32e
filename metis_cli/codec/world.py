"""The parametric acoustic codec of conf/mini: WORLD vocoder features, quantised without gradient training.

    wav [samples] --WORLD analysis--> per frame: log-F0 (interpolated through unvoiced frames), voicing,
    mel-cepstrum, band aperiodicity --normalise, weight--> vector --residual k-means VQ--> codes [frames, n]
    codes --sum of centroids--> vector --WORLD synthesis--> wav [frames * hop]

Why: the embedded corpus on a 2-core CPU cannot train a neural codec that speaks (STOI 0.74-0.81, WER ~94%),
while WORLD analysis/synthesis of the same speech keeps it intelligible (STOI 0.96, WER near the ground
truth's). The quantiser is learned on the train set by the toolkit's own k-means, one residual stage per
codebook, so codebook 0 carries the coarse joint shape of envelope, pitch and voicing, which S2A predicts
first, and each later codebook refines what the ones before left.

Frames: ``len(wav) // hop`` of them (the SSL tokens' count), frame i describing the 20 ms around sample
``i * hop + hop / 2``; synthesis interpolates the frames onto a 5 ms grid and returns ``frames * hop``
samples. The model is an ``nn.Module`` whose state (normalisation, weights, codebooks) is buffers, so
experiment dirs, safetensors checkpoints and ``load_weights`` serve it exactly like the neural codec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from metis_cli.codec.model import CodecRates
from metis_cli.errors import MetisError

GRID = (
    4  # analysis and synthesis grid: 4 steps per code frame (5 ms at 20 ms), so pitch and envelope glide between frames
)
F0_METHODS = ("harvest", "dio")


@dataclass
class WorldQuantizerConfig:
    n_codebooks: int = 8
    codebook_size: int = 256
    kmeans_iters: int = 25
    # pitch_codebook: the index of a codebook given to pitch and voicing alone (code 0 unvoiced, the others
    # log-F0 levels from a 1-D k-means of the voiced frames), the other codebooks a residual VQ of the
    # envelope and aperiodicity; empty: every codebook a residual VQ of the whole vector
    pitch_codebook: int | None = None


@dataclass
class WorldCodecConfig(CodecRates):
    sample_rate: int = 16000
    hop_length: int = 320  # 20 ms at 16 kHz: the SSL tokens' frame rate
    f0_method: str = "harvest"  # harvest, or dio (+ StoneMask refinement): 4x faster, worse on real speech
    f0_floor: float = 50.0
    f0_ceil: float = 500.0
    mcep_order: int = 24
    mcep_alpha: float = 0.42  # frequency warping of the mel-cepstrum (0.42 approximates the mel scale at 16 kHz)
    fft_size: int = 1024
    bap_edges: list = field(
        default_factory=lambda: [0, 500, 1000, 2000, 3000, 4500, 6000, 8000]
    )  # Hz, band aperiodicity
    # weights of each part of the normalised vector in the VQ's distance: one log-F0 value and one voicing
    # flag against mcep_order + 1 cepstra, so pitch and voicing get more than a single dimension's say
    weights: dict = field(default_factory=lambda: {"lf0": 3.0, "vuv": 2.0, "mcep": 1.0, "bap": 0.5})
    quantizer: WorldQuantizerConfig = field(default_factory=WorldQuantizerConfig)

    @property
    def n_bands(self) -> int:
        return len(self.bap_edges) - 1

    @property
    def feature_dim(self) -> int:
        return 2 + self.mcep_order + 1 + self.n_bands

    @classmethod
    def from_dict(cls, d: dict) -> "WorldCodecConfig":
        from metis_cli.config import check_keys

        d = dict(d)
        d.pop("kind", None)
        check_keys(d, cls, "codec model (kind world)")
        quantizer = d.pop("quantizer", {}) or {}
        check_keys(quantizer, WorldQuantizerConfig, "codec model.quantizer (kind world)")
        cfg = cls(**d, quantizer=WorldQuantizerConfig(**quantizer))
        cfg.check()
        return cfg

    def to_dict(self) -> dict:
        return {"kind": "world", **asdict(self)}

    def check(self) -> None:
        if self.f0_method not in F0_METHODS:
            raise MetisError(f"codec model.f0_method must be one of {', '.join(F0_METHODS)}, got '{self.f0_method}'")
        edges = list(self.bap_edges)
        if len(edges) < 2 or edges != sorted(edges) or edges[0] != 0 or edges[-1] > self.sample_rate / 2:
            raise MetisError(
                f"codec model.bap_edges must rise from 0 to at most {self.sample_rate // 2} Hz, got {edges}"
            )
        missing = {"lf0", "vuv", "mcep", "bap"} - set(self.weights)
        if missing:
            raise MetisError(f"codec model.weights lacks {', '.join(sorted(missing))}")
        q = self.quantizer
        if q.n_codebooks < 1 or q.codebook_size < 2:
            raise MetisError(
                f"codec model.quantizer needs n_codebooks >= 1 and codebook_size >= 2, got {q.n_codebooks} x "
                f"{q.codebook_size}"
            )
        if q.pitch_codebook is not None and not 0 <= q.pitch_codebook < q.n_codebooks:
            raise MetisError(
                f"codec model.quantizer.pitch_codebook must be empty or in 0..{q.n_codebooks - 1}, got "
                f"{q.pitch_codebook}"
            )


def codec_kind(model: dict) -> str:
    """``world`` or ``neural`` (the default: configs from before there was a choice say nothing)."""
    kind = model.get("kind", "neural")
    if kind not in ("world", "neural"):
        raise MetisError(f"codec model.kind must be world or neural, got '{kind}'")
    return kind


# --- features ----------------------------------------------------------------------------------------
def _bin_freqs(cfg: WorldCodecConfig) -> np.ndarray:
    return np.arange(cfg.fft_size // 2 + 1) * cfg.sample_rate / cfg.fft_size


def import_world():
    """(pyworld, pysptk), imported. Both read ``pkg_resources`` at import (pyworld 0.3.5 for its version,
    pysptk 1.0.1 for its example file), which setuptools >= 81 no longer ships; where it is missing, a
    stand-in answering those two calls from importlib is registered for the imports (and removed after)."""
    import importlib
    import importlib.metadata
    import importlib.resources
    import importlib.util
    import sys
    import types

    stand_in = None
    if importlib.util.find_spec("pkg_resources") is None:
        stand_in = types.ModuleType("pkg_resources")
        stand_in.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        stand_in.resource_filename = lambda package, name: str(
            importlib.resources.files(package.rpartition(".")[0] or package) / name
        )
        sys.modules["pkg_resources"] = stand_in
    try:
        return importlib.import_module("pyworld"), importlib.import_module("pysptk")
    except ModuleNotFoundError as exc:
        raise MetisError(
            f"{exc.name} is not installed (the WORLD codec needs pyworld and pysptk); run: bash tools/install.sh"
        ) from None
    finally:
        if stand_in is not None:
            sys.modules.pop("pkg_resources", None)


def _grid_ms(cfg: WorldCodecConfig) -> float:
    return 1000.0 * cfg.hop_length / cfg.sample_rate / GRID


def analyse(wav: np.ndarray, cfg: WorldCodecConfig) -> np.ndarray:
    """WORLD features of 1-D audio at ``cfg.sample_rate``: [len(wav) // hop, feature_dim] float32, columns
    (log-F0, voiced, mel-cepstrum 0..order, band aperiodicity in dB). Unvoiced frames carry a log-F0
    interpolated from their voiced neighbours (or log(f0_floor) when nothing is voiced)."""
    pyworld, pysptk = import_world()

    hop, rate = cfg.hop_length, cfg.sample_rate
    frames = len(wav) // hop
    if frames < 1:
        raise MetisError(f"audio of {len(wav)} samples is shorter than one codec frame ({hop} samples)")
    x = np.ascontiguousarray(wav[: frames * hop], dtype=np.float64)
    if not np.isfinite(x).all():
        raise MetisError("audio holds NaN or infinite samples")
    # F0 on the 5 ms grid; frame i's centre, (i + 1/2) * 20 ms, falls on grid point 4i + 2
    period = _grid_ms(cfg)
    if cfg.f0_method == "harvest":
        f0_grid, times = pyworld.harvest(x, rate, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=period)
    else:
        f0_grid, times = pyworld.dio(x, rate, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=period)
        f0_grid = pyworld.stonemask(x, f0_grid, times, rate)
    centres = (np.arange(frames) + 0.5) * hop / rate
    index = np.minimum(GRID * np.arange(frames) + GRID // 2, len(f0_grid) - 1)
    f0 = np.ascontiguousarray(f0_grid[index])
    sp = pyworld.cheaptrick(x, f0, centres, rate, fft_size=cfg.fft_size)
    ap = pyworld.d4c(x, f0, centres, rate, fft_size=cfg.fft_size)
    mcep = pysptk.sp2mc(np.maximum(sp, 1e-16), cfg.mcep_order, cfg.mcep_alpha)
    freqs = _bin_freqs(cfg)
    ap_db = 20 * np.log10(np.clip(ap, 1e-3, 1.0))
    bands = zip(cfg.bap_edges[:-1], cfg.bap_edges[1:], strict=True)
    bap = np.stack([ap_db[:, (freqs >= lo) & (freqs <= hi)].mean(1) for lo, hi in bands], 1)
    voiced = f0 > 0
    lf0 = np.full(frames, math.log(cfg.f0_floor))
    if voiced.any():
        at = np.flatnonzero(voiced)
        lf0 = np.interp(np.arange(frames), at, np.log(f0[at]))
    return np.concatenate([lf0[:, None], voiced[:, None], mcep, bap], 1).astype(np.float32)


def _interp_frames(values: np.ndarray, frames: int) -> np.ndarray:
    """[frames, D] at the frame centres -> [GRID * frames + 1, D] on the synthesis grid (ends held)."""
    grid = np.arange(GRID * frames + 1) / GRID - 0.5  # grid point g sits at frame position g/GRID - 1/2
    out = np.empty((len(grid), values.shape[1]))
    for d in range(values.shape[1]):
        out[:, d] = np.interp(grid, np.arange(frames), values[:, d])
    return out


def synthesise(features: np.ndarray, cfg: WorldCodecConfig) -> np.ndarray:
    """WORLD synthesis of [frames, feature_dim] features (``analyse``'s columns): ``frames * hop`` float32 samples."""
    pyworld, pysptk = import_world()

    frames = len(features)
    if frames < 1:
        return np.zeros(0, dtype=np.float32)
    order = cfg.mcep_order
    lf0, voiced = features[:, 0].copy(), features[:, 1] > 0.5
    if voiced.any() and not voiced.all():  # as in analysis: unvoiced frames take their voiced neighbours' log-F0
        at = np.flatnonzero(voiced)
        lf0 = np.interp(np.arange(frames), at, lf0[at])
    mcep, bap = features[:, 2 : 3 + order], features[:, 3 + order :]
    grid = _interp_frames(np.concatenate([lf0[:, None], mcep, bap], 1), frames)
    # voicing is not interpolated: each grid point takes its nearest frame's decision
    nearest = np.minimum(np.arange(GRID * frames + 1) // GRID, frames - 1)
    f0 = np.where(voiced[nearest], np.exp(np.clip(grid[:, 0], math.log(cfg.f0_floor), math.log(cfg.f0_ceil))), 0.0)
    sp = pysptk.mc2sp(np.ascontiguousarray(grid[:, 1 : 2 + order]), cfg.mcep_alpha, cfg.fft_size)
    band_centres = [(lo + hi) / 2 for lo, hi in zip(cfg.bap_edges[:-1], cfg.bap_edges[1:], strict=True)]
    freqs = _bin_freqs(cfg)
    bap_grid = grid[:, 2 + order :]
    ap_db = np.stack([np.interp(freqs, band_centres, row) for row in bap_grid])
    ap = np.clip(10 ** (ap_db / 20), 1e-3, 1.0)
    wav = pyworld.synthesize(
        np.ascontiguousarray(f0),
        np.ascontiguousarray(sp),
        np.ascontiguousarray(ap),
        cfg.sample_rate,
        frame_period=_grid_ms(cfg),
    )
    wav = wav[: frames * cfg.hop_length]
    if len(wav) < frames * cfg.hop_length:
        wav = np.pad(wav, (0, frames * cfg.hop_length - len(wav)))
    return np.nan_to_num(wav).astype(np.float32)


# --- the codec -----------------------------------------------------------------------------------------
class WorldCodec(nn.Module):
    """Encode/decode like ``Codec`` (``encode``: [B, samples] -> [B, frames, n_codebooks]; ``decode``: codes ->
    [B, frames * hop]) with WORLD and a residual k-means VQ whose state is buffers: ``mean``, ``std`` and
    ``scale`` of the feature vector, ``codebooks`` [n_codebooks, codebook_size, feature_dim]."""

    kind = "world"

    def __init__(self, cfg: WorldCodecConfig):
        super().__init__()
        self.cfg = cfg
        dim, q = cfg.feature_dim, cfg.quantizer
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("scale", self.part_weights(cfg))
        self.register_buffer("codebooks", torch.zeros(q.n_codebooks, q.codebook_size, dim))

    @staticmethod
    def part_weights(cfg: WorldCodecConfig) -> torch.Tensor:
        w = cfg.weights
        parts = [w["lf0"], w["vuv"]] + [w["mcep"]] * (cfg.mcep_order + 1) + [w["bap"]] * cfg.n_bands
        return torch.tensor(parts, dtype=torch.float32)

    def fit_normalisation(self, features: np.ndarray) -> None:
        """Mean and spread of the train set's features. log-F0, c0 (energy) each get their own spread; the
        cepstra c1.. share one, and so do the aperiodicity bands, so that distances within them stay those
        of the natural scale (Euclidean mel-cepstral distance, which follows the log-spectral one),
        where low orders vary most and matter most, instead of every order counting alike."""
        x = torch.from_numpy(np.array(features, dtype=np.float32))
        mean, var = x.mean(0), x.var(0)
        std = var.sqrt()
        order = self.cfg.mcep_order
        std[3 : 3 + order] = var[3 : 3 + order].mean().sqrt()
        std[3 + order :] = var[3 + order :].mean().sqrt()
        mean[1], std[1] = 0.5, 0.5  # voicing is a 0/1 flag: its weight alone sets its say
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-3))

    # vectors: the VQ's space (normalised and weighted features)
    def to_vectors(self, features: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(features, dtype=np.float32))
        return (x - self.mean.cpu()) / self.std.cpu() * self.scale.cpu()

    def from_vectors(self, vectors: torch.Tensor) -> np.ndarray:
        return (vectors.cpu() / self.scale.cpu() * self.std.cpu() + self.mean.cpu()).numpy()

    def assign(self, residual: torch.Tensor, index: int) -> torch.Tensor:
        """Codebook ``index``'s codes for [T, dim] residual vectors: the nearest entry; for the pitch
        codebook, 0 where the frame is unvoiced and the nearest log-F0 level where it is voiced."""
        book = self.codebooks[index].cpu()
        if index != self.cfg.quantizer.pitch_codebook:
            return torch.cdist(residual, book).argmin(1)
        levels = (residual[:, :1] - book[None, 1:, 0]).abs().argmin(1) + 1
        return torch.where(residual[:, 1] > 0, levels, torch.zeros_like(levels))

    def residual_vq(self, vectors: torch.Tensor, n_codebooks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy residual VQ with the first ``n_codebooks``: [T, dim] -> (codes [T, n] int64, what they
        leave [T, dim])."""
        residual = vectors.clone()
        codes = []
        for i in range(n_codebooks):
            code = self.assign(residual, i)
            residual -= self.codebooks[i].cpu()[code]
            codes.append(code)
        return torch.stack(codes, 1) if codes else torch.zeros(len(vectors), 0, dtype=torch.long), residual

    def quantize(self, vectors: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """Greedy residual VQ: [T, dim] -> codes [T, n] (int64)."""
        return self.residual_vq(vectors, n_codebooks or self.cfg.quantizer.n_codebooks)[0]

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        books = self.codebooks.cpu()
        return sum(books[i][codes[:, i]] for i in range(codes.shape[1]))

    def check_codes(self, codes: torch.Tensor) -> None:
        q = self.cfg.quantizer
        if codes.ndim != 3 or codes.shape[-1] > q.n_codebooks:
            raise MetisError(
                f"codes of shape {tuple(codes.shape)}: this codec takes [batch, frames, <= {q.n_codebooks}]"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= q.codebook_size):
            raise MetisError(
                f"code values must be in 0..{q.codebook_size - 1}; got {int(codes.min())}..{int(codes.max())}"
            )

    @torch.no_grad()
    def encode_features(self, features: np.ndarray, n_codebooks: int | None = None) -> torch.Tensor:
        return self.quantize(self.to_vectors(features), n_codebooks)

    @torch.no_grad()
    def decode_features(self, codes: torch.Tensor) -> np.ndarray:
        """codes [T, n] -> features [T, feature_dim] (codebooks past n count as zero)."""
        return self.from_vectors(self.dequantize(codes.long().cpu()))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """[B, samples] -> codes [B, frames, n_codebooks] (int64); every item has len // hop frames, so the
        items of a batch must have the same length (as a padded batch has)."""
        codes = [self.encode_features(analyse(w.float().cpu().numpy(), self.cfg), n_codebooks) for w in wav]
        return torch.stack(codes).to(wav.device)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, frames, n] -> [B, frames * hop] (float32, on the codes' device)."""
        self.check_codes(codes)
        return self.decode_vectors(torch.stack([self.dequantize(c.long().cpu()) for c in codes]).to(codes.device))

    @torch.no_grad()
    def decode_expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Distributions over codes [B, frames, n, codebook_size] (what S2A predicts) -> [B, frames * hop]: WORLD
        synthesis of the expected vector, sum over codebooks of sum_j p_j * entry_j (the features are continuous,
        so the mean of what S2A finds likely is the least-squares estimate, where a sampled code can be far off;
        a codebook S2A cannot predict adds its mean entry, near zero). Codebooks past n count as zero."""
        q = self.cfg.quantizer
        if probs.ndim != 4 or probs.shape[2] > q.n_codebooks or probs.shape[3] != q.codebook_size:
            raise MetisError(
                f"code distributions of shape {tuple(probs.shape)}: this codec takes "
                f"[batch, frames, <= {q.n_codebooks}, {q.codebook_size}]"
            )
        books = self.codebooks.cpu()[: probs.shape[2]]
        return self.decode_vectors(torch.einsum("btnv,nvd->btd", probs.float().cpu(), books).to(probs.device))

    @torch.no_grad()
    def decode_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Vectors in the VQ's space [B, frames, feature_dim] (what an S2A of output 'vector' predicts) ->
        WORLD synthesis [B, frames * hop] (float32, on the vectors' device)."""
        if vectors.ndim != 3 or vectors.shape[-1] != self.cfg.feature_dim:
            raise MetisError(
                f"vectors of shape {tuple(vectors.shape)}: this codec takes [batch, frames, {self.cfg.feature_dim}]"
            )
        if not torch.isfinite(vectors).all():
            raise MetisError("vectors to decode hold NaN or infinite values")
        waves = [synthesise(self.from_vectors(v.float()), self.cfg) for v in vectors]
        return torch.from_numpy(np.stack(waves)).to(vectors.device)

    def parameter_counts(self) -> dict[str, int]:
        return {"codebooks": int(self.codebooks.numel()), "total": int(sum(b.numel() for b in self.buffers()))}
