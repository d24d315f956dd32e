"""The codec's shapes, sizes and invariants, at the full and mini configs."""

import pytest
import torch
import yaml
from conftest import REPO

from metis_cli.codec.model import Codec, CodecConfig, istft_same, stft_same
from metis_cli.errors import MetisError


def config(name: str) -> CodecConfig:
    return CodecConfig.from_dict(
        yaml.safe_load((REPO / "conf" / name / ("codec_neural.yaml" if name == "mini" else "codec.yaml")).read_text())[
            "model"
        ]
    )


def test_full_config_matches_the_published_sizes():
    cfg = config("full")
    counts = Codec(cfg).parameter_counts()
    print("full codec parameters:", counts)
    assert counts["encoder"] == pytest.approx(42.5e6, rel=0.01)
    assert counts["quantizer"] + counts["decoder"] == pytest.approx(128.2e6, rel=0.01)
    assert (cfg.sample_rate, cfg.hop_length, cfg.quantizer.n_codebooks, cfg.quantizer.codebook_size) == (
        24000,
        480,
        12,
        1024,
    )
    assert cfg.frame_rate == 50 and cfg.bitrate == 6000


def test_mini_config_is_small_and_50_hz():
    cfg = config("mini")
    counts = Codec(cfg).parameter_counts()
    print("mini codec parameters:", counts)
    assert counts["total"] < 6e6 and cfg.sample_rate == 16000 and cfg.frame_rate == 50


@pytest.mark.parametrize("name", ["mini", "full"])
def test_encode_decode_round_trip_lengths(name):
    torch.manual_seed(0)
    cfg = config(name)
    model = Codec(cfg).eval()
    wav = 0.1 * torch.randn(1, int(0.37 * cfg.sample_rate))
    codes = model.encode(wav)
    frames = -(-wav.shape[-1] // cfg.hop_length)
    assert codes.shape == (1, frames, cfg.quantizer.n_codebooks)
    assert int(codes.min()) >= 0 and int(codes.max()) < cfg.quantizer.codebook_size
    assert model.decode(codes).shape == (1, frames * cfg.hop_length)
    assert model.decode(codes[..., :3]).shape == (1, frames * cfg.hop_length), "fewer codebooks decode too"


def test_the_neural_codec_decodes_codes_not_distributions():
    from metis_cli.infer.generate import resolve_codec_input

    codec = Codec(config("mini"))
    assert resolve_codec_input(codec, "auto") == "codes"
    with pytest.raises(MetisError, match="use --codec-input codes"):
        resolve_codec_input(codec, "expected")


def test_quantizer_dropout_uses_fewer_codebooks():
    torch.manual_seed(0)
    cfg = config("mini")
    cfg.quantizer.dropout = config("full").quantizer.dropout  # 0.5 (mini trains without it)
    model = Codec(cfg).train()
    out = model(0.1 * torch.randn(64, cfg.hop_length * 10))
    used = out["codebooks_used"]
    assert used.max() == cfg.quantizer.n_codebooks and used.min() < cfg.quantizer.n_codebooks
    assert 0.25 < float((used < cfg.quantizer.n_codebooks).float().mean()) < 0.75
    model.eval()
    assert bool((model(0.1 * torch.randn(8, 3200))["codebooks_used"] == cfg.quantizer.n_codebooks).all())


def test_istft_inverts_the_matching_stft():
    torch.manual_seed(0)
    window, hop = torch.hann_window(1280), 320
    wav = torch.randn(2, hop * 40)
    rebuilt = istft_same(stft_same(wav, window, hop), window, hop)
    assert rebuilt.shape == wav.shape
    inner = slice(1280, -1280)  # the edges lack overlapping frames
    assert torch.allclose(rebuilt[:, inner], wav[:, inner], atol=1e-4)


def test_bad_codes_and_configs():
    model = Codec(config("mini")).eval()
    with pytest.raises(MetisError, match=r"code values must be in 0..1023; got 0..1024"):
        model.decode(torch.tensor([[[0] * 8, [1024] * 8]]))
    with pytest.raises(MetisError, match="codes have 9 codebooks; this codec has 8"):
        model.decode(torch.zeros(1, 2, 9, dtype=torch.long))
    with pytest.raises(MetisError, match="unknown key"):
        CodecConfig.from_dict({"sample_rate": 16000, "vocoder": {}})
    with pytest.raises(MetisError, match="codec config"):
        CodecConfig.from_dict({"encoder": {"chanels": 3}})


def test_dead_codes_are_moved_onto_batch_frames():
    from metis_cli.codec.model import FactorizedVQ

    torch.manual_seed(0)
    vq = FactorizedVQ(16, codebook_size=64, codebook_dim=4, dead_code_threshold=0.5, restart_every=100).train()
    before = vq.codebook.weight.detach().clone()
    z = torch.randn(2, 16, 50)
    for _ in range(100):  # one check, after 100 calls
        vq(z)
    moved = (vq.codebook.weight != before).any(1)
    assert 0 < int(moved.sum()) < 64  # the codes this batch never picks moved, the others stayed
    e = vq.in_proj(z).detach().transpose(1, 2).reshape(-1, 4)
    for row in vq.codebook.weight[moved]:
        assert (e - row).abs().amax(1).min() < 1e-6  # each moved code now sits on a frame of the batch
    assert float(vq.usage.abs().sum()) == 0.0  # the next window starts empty
    state = {k: v for k, v in vq.state_dict().items() if k not in ("usage", "calls")}
    FactorizedVQ(16, 64, 4).load_state_dict(state)  # checkpoints from before restarts still load
