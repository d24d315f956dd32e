"""Codec training losses (multi-scale mel, multi-resolution STFT) and the Vocos/DAC-style
discriminators (multi-period on the waveform, multi-resolution on spectrograms) with feature matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metis_cli.dsp import mel_filterbank


def _magnitude(wav: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=wav.device)
    spec = torch.stft(wav.float(), n_fft, hop, window=window, return_complex=True)
    return spec.abs().clamp_min(1e-7)


class MultiScaleMelLoss(nn.Module):
    """L1 between log10 mel spectrograms at several window sizes (hop = window / 4)."""

    def __init__(self, sample_rate: int, windows=(256, 1024, 2048), n_mels=(32, 80, 160)):
        super().__init__()
        self.windows = list(windows)
        for i, (w, m) in enumerate(zip(windows, n_mels, strict=True)):
            self.register_buffer(
                f"fb{i}", torch.from_numpy(mel_filterbank(sample_rate, w, m)).float(), persistent=False
            )

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for i, w in enumerate(self.windows):
            fb = getattr(self, f"fb{i}")
            # Floor at 1e-10 in power (1e-5 in magnitude): a higher floor swallows quiet speech, and
            # below it the loss has no gradient, so a model that goes quiet early would stay quiet.
            mel_f = torch.log10((fb @ _magnitude(fake, w, w // 4) ** 2).clamp_min(1e-10))
            mel_r = torch.log10((fb @ _magnitude(real, w, w // 4) ** 2).clamp_min(1e-10))
            loss = loss + F.l1_loss(mel_f, mel_r)
        return loss / len(self.windows)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 at several resolutions."""

    def __init__(self, resolutions=((512, 128), (1024, 256), (2048, 512))):
        super().__init__()
        self.resolutions = list(resolutions)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for n_fft, hop in self.resolutions:
            mf, mr = _magnitude(fake, n_fft, hop), _magnitude(real, n_fft, hop)
            convergence = torch.linalg.norm(mr - mf) / torch.linalg.norm(mr).clamp_min(1e-7)
            loss = loss + convergence + F.l1_loss(mf.log(), mr.log())
        return loss / len(self.resolutions)


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: int):
        super().__init__()
        self.period = period
        chans = [1, channels, channels * 4, channels * 8, channels * 8]
        self.convs = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(
                nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 3 else 1, 1), padding=(2, 0))
            )
            for i in range(len(chans) - 1)
        )
        self.post = nn.utils.parametrizations.weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor):
        b, t = wav.shape
        wav = F.pad(wav, (0, (-t) % self.period), mode="reflect")
        x = wav.view(b, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.post(x), features


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int):
        super().__init__()
        self.n_fft = n_fft
        self.convs = nn.ModuleList(
            [
                nn.utils.parametrizations.weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), padding=(3, 2))),
                nn.utils.parametrizations.weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
                nn.utils.parametrizations.weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 2), padding=(2, 1))),
                nn.utils.parametrizations.weight_norm(nn.Conv2d(channels, channels, 3, padding=1)),
            ]
        )
        self.post = nn.utils.parametrizations.weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor):
        x = _magnitude(wav, self.n_fft, self.n_fft // 4).unsqueeze(1).log()
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.post(x), features


class Discriminators(nn.Module):
    def __init__(self, periods=(2, 3, 5, 7, 11), resolutions=(512, 1024, 2048), channels: int = 32):
        super().__init__()
        self.nets = nn.ModuleList(
            [PeriodDiscriminator(p, channels) for p in periods]
            + [ResolutionDiscriminator(n, channels) for n in resolutions]
        )

    def forward(self, wav: torch.Tensor):
        return [net(wav) for net in self.nets]


def discriminator_loss(real_outputs, fake_outputs) -> torch.Tensor:
    """Least-squares GAN: real towards 1, generated towards 0."""
    pairs = zip(real_outputs, fake_outputs, strict=True)
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f**2) for (r, _), (f, _) in pairs) / len(real_outputs)


def generator_losses(real_outputs, fake_outputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial loss of the generated audio, and L1 feature matching against the real audio."""
    adversarial = sum(torch.mean((1 - f) ** 2) for f, _ in fake_outputs) / len(fake_outputs)
    matching = 0.0
    count = 0
    for (_, real_features), (_, fake_features) in zip(real_outputs, fake_outputs, strict=True):
        for r, f in zip(real_features, fake_features, strict=True):
            matching = matching + F.l1_loss(f, r.detach())
            count += 1
    return adversarial, matching / max(count, 1)
