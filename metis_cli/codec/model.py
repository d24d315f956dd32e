"""The acoustic codec: DAC-style encoder, factorised residual VQ, Vocos decoder (shapes: REFERENCE.md).

    wav [B, samples] --encoder--> latents [B, latent_dim, frames] --RVQ--> codes [B, frames, n_codebooks]
    codes --RVQ lookup--> latents --Vocos (ConvNeXt + inverse STFT)--> wav [B, frames * hop]

Every size is a config value (``CodecConfig``); ``conf/full/codec.yaml`` gives the published 24 kHz,
hop 480, 12 x 1024 codec, ``conf/mini/codec_neural.yaml`` a small 16 kHz, 50 Hz one that trains on a CPU
(the mini recipes use the parametric codec of metis_cli/codec/world.py by default).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from metis_cli.config import check_keys
from metis_cli.errors import MetisError


@dataclass
class EncoderConfig:
    channels: int = 96
    strides: list[int] = field(default_factory=lambda: [3, 4, 5, 8])
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9])
    latent_dim: int = 256


@dataclass
class QuantizerConfig:
    n_codebooks: int = 12
    codebook_size: int = 1024
    codebook_dim: int = 8
    dropout: float = 0.5  # share of training batches that use a random number of codebooks
    commitment_weight: float = 0.25
    # Dead-code restarts: every ``restart_every`` training steps, a code that got under
    # ``dead_code_threshold`` of its uniform share of the frames since the last check is moved onto a
    # random frame of the batch. Without them a small codec trained briefly uses a few dozen of its 1024
    # codes. 0 = off (DAC).
    dead_code_threshold: float = 0.0
    restart_every: int = 50


@dataclass
class DecoderConfig:
    dim: int = 512
    intermediate_dim: int = 4096
    n_layers: int = 30
    n_fft: int = 1920


class CodecRates:
    """Frame rate and bitrate of a codec config (either kind) with sample_rate, hop_length and quantizer."""

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second at full codebook use."""
        return self.frame_rate * self.quantizer.n_codebooks * math.log2(self.quantizer.codebook_size)


@dataclass
class CodecConfig(CodecRates):
    sample_rate: int = 24000
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    @property
    def hop_length(self) -> int:
        return math.prod(self.encoder.strides)

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        """From a config's ``model`` section; its ``kind``, when given, must be ``neural`` (the parametric
        codec's sections are read by WorldCodecConfig)."""
        d = dict(d)
        if d.pop("kind", "neural") != "neural":
            raise MetisError("codec config: this is not a neural codec's config (model.kind is not neural)")
        check_keys(d, cls, "codec config")
        try:
            return cls(
                sample_rate=int(d.get("sample_rate", 24000)),
                encoder=EncoderConfig(**d.get("encoder", {})),
                quantizer=QuantizerConfig(**d.get("quantizer", {})),
                decoder=DecoderConfig(**d.get("decoder", {})),
            )
        except TypeError as exc:
            raise MetisError(f"codec config: {exc}") from None

    def to_dict(self) -> dict:
        return asdict(self)


class Snake1d(nn.Module):
    """x + sin^2(alpha x) / alpha, one alpha per channel (periodic inductive bias for audio)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def wn_conv(*args, **kwargs) -> nn.Module:
    return weight_norm(nn.Conv1d(*args, **kwargs))


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(channels),
            wn_conv(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake1d(channels),
            wn_conv(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dilations):
        super().__init__()
        self.block = nn.Sequential(
            *[ResidualUnit(in_channels, d) for d in dilations],
            Snake1d(in_channels),
            wn_conv(in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers: list[nn.Module] = [wn_conv(1, cfg.channels, kernel_size=7, padding=3)]
        channels = cfg.channels
        for stride in cfg.strides:
            layers.append(EncoderBlock(channels, channels * 2, stride, cfg.dilations))
            channels *= 2
        layers += [Snake1d(channels), wn_conv(channels, cfg.latent_dim, kernel_size=3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.hop = math.prod(cfg.strides)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> [B, latent_dim, samples // hop] (input padded to a whole number of frames)."""
        frames = math.ceil(wav.shape[-1] / self.hop)
        wav = F.pad(wav, (0, frames * self.hop - wav.shape[-1]))
        return self.net(wav.unsqueeze(1))[..., :frames]


class FactorizedVQ(nn.Module):
    """Project to a few dims, L2-normalise, look up the nearest code (cosine), project back."""

    def __init__(
        self,
        input_dim: int,
        codebook_size: int,
        codebook_dim: int,
        dead_code_threshold: float = 0.0,
        restart_every: int = 50,
    ):
        super().__init__()
        self.in_proj = wn_conv(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = wn_conv(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.dead_code_threshold, self.restart_every = dead_code_threshold, restart_every
        # Each code's share of the frames, summed over the calls since the last restart check.
        self.register_buffer("usage", torch.zeros(codebook_size))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("usage", "calls"):  # checkpoints from before dead-code restarts
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def restart_dead_codes(self, e: torch.Tensor, codes: torch.Tensor) -> None:
        """Counts how often each code is used and, every ``restart_every`` calls, moves the codes used too
        little since the last check onto random frames of ``e``. A window rather than a running average:
        a restarted code that stays unused is moved again at the next check (a fresh codebook collapses
        onto one code, and a slow average kept the others idle for hundreds of steps). With several
        ranks the counts are summed and rank 0's new codes are broadcast, so all ranks agree."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        size = self.codebook.num_embeddings
        counts = torch.bincount(codes.flatten(), minlength=size).float()
        if distributed:
            torch.distributed.all_reduce(counts)
        self.usage.add_(counts / counts.sum())
        self.calls += 1
        if int(self.calls) % self.restart_every:
            return
        dead = self.usage / self.restart_every < self.dead_code_threshold / size
        if dead.any():
            frames = e.detach().transpose(1, 2).reshape(-1, e.shape[1])
            pick = torch.randint(0, len(frames), (int(dead.sum()),), device=e.device)
            self.codebook.weight.data[dead] = frames[pick].to(self.codebook.weight.dtype)
        self.usage.zero_()
        if distributed:
            torch.distributed.broadcast(self.codebook.weight.data, 0)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.codebook(codes).transpose(1, 2))

    def forward(self, z: torch.Tensor):
        """Quantised z (straight-through), codes, commitment and codebook losses (per item).

        The lookup compares directions (cosine), but the losses compare the projected latent itself with
        the code vector, as DAC does: that is what keeps the encoder's output scale from drifting.
        """
        e = self.in_proj(z)  # [B, d, T]
        codes = (F.normalize(e, dim=1).transpose(1, 2) @ F.normalize(self.codebook.weight, dim=-1).T).argmax(-1)
        q = self.codebook(codes).transpose(1, 2)
        if self.training and self.dead_code_threshold > 0:
            self.restart_dead_codes(e, codes)
        commitment = F.mse_loss(e, q.detach(), reduction="none").mean([1, 2])
        codebook = F.mse_loss(q, e.detach(), reduction="none").mean([1, 2])
        q = e + (q - e).detach()
        return self.out_proj(q), codes, commitment, codebook


class ResidualVQ(nn.Module):
    def __init__(self, input_dim: int, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(
            FactorizedVQ(input_dim, cfg.codebook_size, cfg.codebook_dim, cfg.dead_code_threshold, cfg.restart_every)
            for _ in range(cfg.n_codebooks)
        )

    def forward(self, z: torch.Tensor, n_codebooks: int | None = None):
        """Returns quantised z, codes [B, T, n], commitment loss, codebook loss, codebooks used per item.

        In training, a ``dropout`` share of the items uses only the first k codebooks (k uniform in
        1..n) so that the decoder also works with fewer codes (DAC's quantizer dropout).
        """
        batch = z.shape[0]
        n = n_codebooks or self.cfg.n_codebooks
        used = torch.full((batch,), n, device=z.device)
        if self.training and n_codebooks is None and self.cfg.dropout > 0:
            drop = torch.rand(batch, device=z.device) < self.cfg.dropout
            used = torch.where(drop, torch.randint(1, n + 1, (batch,), device=z.device), used)
        residual, out = z, torch.zeros_like(z)
        codes, commitment, codebook = [], torch.zeros(batch, device=z.device), torch.zeros(batch, device=z.device)
        for i, layer in enumerate(self.layers[:n]):
            q, c, commit, cb = layer(residual)
            mask = (i < used).to(z.dtype)[:, None, None]
            out = out + q * mask
            residual = residual - q
            commitment = commitment + commit * mask[:, 0, 0]
            codebook = codebook + cb * mask[:, 0, 0]
            codes.append(c)
        return out, torch.stack(codes, dim=-1), commitment.mean(), codebook.mean(), used

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T, n] -> latents [B, latent_dim, T]."""
        if codes.shape[-1] > len(self.layers):
            raise MetisError(f"codes have {codes.shape[-1]} codebooks; this codec has {len(self.layers)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.codebook_size):
            raise MetisError(
                f"code values must be in 0..{self.cfg.codebook_size - 1}; got {int(codes.min())}..{int(codes.max())}"
            )
        return sum(layer.decode_codes(codes[..., i]) for i, layer in enumerate(self.layers[: codes.shape[-1]]))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.pwconv2(F.gelu(self.pwconv1(y))) * self.gamma
        return x + y.transpose(1, 2)


def istft_same(spec: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """Inverse STFT with "same" padding: [B, n_fft/2+1, T] complex -> [B, T * hop] samples.

    Frame t covers samples [t*hop - pad, t*hop - pad + n_fft) with pad = (n_fft - hop) / 2; overlap-add
    divided by the summed squared window, as Vocos does.
    """
    n_fft = window.shape[0]
    frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]  # [B, n_fft, T]
    count = frames.shape[-1]
    length = (count - 1) * hop + n_fft
    wav = F.fold(frames, (1, length), kernel_size=(1, n_fft), stride=(1, hop))[:, 0, 0]
    envelope = F.fold(
        window.pow(2)[None, :, None].expand(1, -1, count), (1, length), kernel_size=(1, n_fft), stride=(1, hop)
    )[0, 0, 0]
    pad = (n_fft - hop) // 2
    return (wav / envelope.clamp(min=1e-11))[:, pad : pad + count * hop]


def stft_same(wav: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """The STFT that istft_same inverts: [B, T * hop] -> [B, n_fft/2+1, T] complex."""
    n_fft = window.shape[0]
    pad = (n_fft - hop) // 2
    padded = F.pad(wav, (pad, n_fft - hop - pad))
    frames = padded.unfold(-1, n_fft, hop)  # [B, T, n_fft]
    return torch.fft.rfft(frames * window, dim=-1).transpose(1, 2)


class ISTFTHead(nn.Module):
    """Linear -> log-magnitude and phase -> inverse STFT with "same" padding: frames * hop samples."""

    def __init__(self, dim: int, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.out = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag, phase = self.out(x.transpose(1, 2)).transpose(1, 2).chunk(2, dim=1)  # [B, n_fft/2+1, T] each
        spec = torch.polar(torch.exp(mag.float()).clamp(max=1e2), phase.float())
        return istft_same(spec, self.window, self.hop)


class ConvNeXtBackbone(nn.Module):
    """Conv embedding, LayerNorm, ConvNeXt blocks, final LayerNorm: [B, input_dim, T] -> [B, dim, T].

    The trunk of the Vocos decoder and of the VQ SSL tokenizer's encoder and decoder
    (metis_cli.tokenizer.vq); its attribute names are the state-dict keys of both.
    """

    def __init__(self, input_dim: int, dim: int, intermediate_dim: int, n_layers: int):
        super().__init__()
        self.embed = nn.Conv1d(input_dim, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim, 1 / n_layers) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x.transpose(1, 2)).transpose(1, 2)


class VocosDecoder(ConvNeXtBackbone):
    def __init__(self, latent_dim: int, cfg: DecoderConfig, hop: int):
        super().__init__(latent_dim, cfg.dim, cfg.intermediate_dim, cfg.n_layers)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, hop)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(latents))


class Codec(nn.Module):
    kind = "neural"

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder)
        self.quantizer = ResidualVQ(cfg.encoder.latent_dim, cfg.quantizer)
        self.decoder = VocosDecoder(cfg.encoder.latent_dim, cfg.decoder, cfg.hop_length)

    def forward(self, wav: torch.Tensor, n_codebooks: int | None = None) -> dict:
        latents = self.encoder(wav)
        quantized, codes, commitment, codebook, used = self.quantizer(latents, n_codebooks)
        return {
            "wav": self.decoder(quantized),
            "codes": codes,
            "commitment_loss": commitment,
            "codebook_loss": codebook,
            "codebooks_used": used,
        }

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """[B, samples] -> codes [B, frames, n_codebooks] (int64)."""
        latents = self.encoder(wav)
        return self.quantizer(latents, n_codebooks or self.cfg.quantizer.n_codebooks)[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, frames, n] -> [B, frames * hop]."""
        return self.decoder(self.quantizer.decode_codes(codes))

    def parameter_counts(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {
            "encoder": count(self.encoder),
            "quantizer": count(self.quantizer),
            "decoder": count(self.decoder),
            "total": count(self),
        }
