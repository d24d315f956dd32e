"""The parametric (WORLD) codec: frames as the SSL tokens count them, a trained round trip that speaks,
determinism, the same interface as the neural codec, and bad input."""

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.codec.inference import build_codec, decode_codes, encode_datadir, load_codec
from metis_cli.codec.world import WorldCodec, WorldCodecConfig, analyse, synthesise
from metis_cli.config import load_config
from metis_cli.data.arrays import ArrayStore, ArrayWriter, write_meta
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.ssl.extractors import MFCCExtractor
from metis_cli.train.codec import resolve_config, train_codec

runner = CliRunner()
SMALL = [
    "model.quantizer.n_codebooks=8",
    "model.quantizer.codebook_size=32",
    "model.quantizer.kmeans_iters=8",
    "data.val_utterances=2",
]


def speech(tiny_corpus, name="mini_dev", index=0) -> np.ndarray:
    sources = DataDir(tiny_corpus / name).audio_sources()
    return sf.read(sources[sorted(sources)[index]][0], dtype="float32")[0]


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("world") / "exp"
    train_codec(
        load_config(REPO / "conf" / "mini" / "codec.yaml", SMALL, resolve_config),
        exp,
        tiny_corpus / "mini_train",
        tiny_corpus / "mini_dev",
    )
    return exp


def test_mini_config_is_the_world_codec_at_50_hz():
    codec = build_codec(load_config(REPO / "conf" / "mini" / "codec.yaml")["model"])
    cfg = codec.cfg
    assert isinstance(codec, WorldCodec) and codec.kind == "world"
    assert (
        cfg.sample_rate,
        cfg.hop_length,
        cfg.frame_rate,
        cfg.quantizer.n_codebooks,
        cfg.quantizer.codebook_size,
    ) == (16000, 320, 50, 16, 1024)
    assert cfg.feature_dim == 2 + 25 + 7 and cfg.bitrate == 8000 and cfg.quantizer.pitch_codebook == 1


@pytest.mark.parametrize("samples", [16000 + 123, 4999, 3 * 320, 320 * 57 + 319])
def test_frames_are_the_ssl_tokens_frames(samples):
    wav = 0.1 * np.sin(2 * np.pi * 150 * np.arange(samples) / 16000).astype(np.float32)
    features = analyse(wav, WorldCodecConfig())
    assert features.shape == (samples // 320, 34) and len(MFCCExtractor()(wav)) == samples // 320
    assert len(synthesise(features, WorldCodecConfig())) == samples // 320 * 320


def test_analysis_and_synthesis_alone_keep_speech(tiny_corpus):
    from pystoi import stoi

    wav = speech(tiny_corpus)
    out = synthesise(analyse(wav, WorldCodecConfig()), WorldCodecConfig())
    score = stoi(wav[: len(out)], out, 16000)
    print("WORLD analysis/synthesis STOI:", score)
    assert score > 0.9


def test_trained_round_trip_speaks_and_is_deterministic(trained, tiny_corpus):
    from pystoi import stoi

    codec = load_codec(trained)
    assert isinstance(codec, WorldCodec) and sorted(p.name for p in (trained / "checkpoints").iterdir()) == [
        "step_00000008"
    ]
    assert {"config.yaml", "command.txt", "git_revision.txt", "metrics.jsonl", "log", "features"} <= {
        p.name for p in trained.iterdir()
    }
    saved = load_config(trained / "config.yaml")  # in full: the code's defaults of every section
    assert saved["model"]["kind"] == "world" and saved["train"] == {"seed": 0, "kmeans_backend": "auto"}
    assert set(saved["data"]) == {"max_utterances", "num_jobs", "val_utterances"}
    wav = torch.from_numpy(speech(tiny_corpus, index=1))[None]
    codes = codec.encode(wav)
    assert codes.shape == (1, wav.shape[1] // 320, 8) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 32
    assert torch.equal(codes, codec.encode(wav)), "the same audio gives the same codes"
    out = codec.decode(codes)
    assert out.shape == (1, codes.shape[1] * 320) and torch.isfinite(out).all()
    score = stoi(wav[0, : out.shape[1]].numpy(), out[0].numpy(), 16000)
    print("8 x 32 WORLD codec round trip STOI on a dev utterance:", score)
    assert score > 0.8
    assert codec.decode(codes[..., :3]).shape == out.shape, "fewer codebooks decode too"
    # the pitch codebook: 0 exactly where the frame is unvoiced
    voiced = analyse(wav[0].numpy(), codec.cfg)[:, 1] > 0.5
    assert torch.equal(codes[0, :, 1] > 0, torch.from_numpy(voiced))
    val = [line for line in (trained / "metrics.jsonl").read_text().splitlines() if "val_stoi" in line]
    assert len(val) == 1


def test_the_same_seed_learns_the_same_codebooks_and_a_rerun_resumes(trained, tiny_corpus, tmp_path):
    exp = tmp_path / "again"
    train_codec(
        load_config(REPO / "conf" / "mini" / "codec.yaml", SMALL, resolve_config), exp, tiny_corpus / "mini_train"
    )
    assert torch.equal(load_codec(exp).codebooks, load_codec(trained).codebooks)
    stamp = (exp / "checkpoints" / "step_00000008" / "codec.safetensors").stat().st_mtime_ns
    result = train_codec(
        load_config(REPO / "conf" / "mini" / "codec.yaml", SMALL, resolve_config), exp, tiny_corpus / "mini_train"
    )
    assert (
        result["step"] == 8
        and (exp / "checkpoints" / "step_00000008" / "codec.safetensors").stat().st_mtime_ns == stamp
    )


def test_a_run_killed_after_some_codebooks_resumes_to_the_same_codec(trained, tiny_corpus, tmp_path, monkeypatch):
    from metis_cli.train import world_codec as world_train

    exp, fit = tmp_path / "killed", world_train.fit_quantizer

    def fit_until_three(codec, residual, index, **kwargs):
        if index == 3:
            raise KeyboardInterrupt
        return fit(codec, residual, index, **kwargs)

    monkeypatch.setattr(world_train, "fit_quantizer", fit_until_three)
    with pytest.raises(KeyboardInterrupt):
        train_codec(
            load_config(REPO / "conf" / "mini" / "codec.yaml", SMALL, resolve_config), exp, tiny_corpus / "mini_train"
        )
    assert [p.name for p in (exp / "checkpoints").iterdir()] == ["step_00000003"]
    monkeypatch.setattr(world_train, "fit_quantizer", fit)
    train_codec(
        load_config(REPO / "conf" / "mini" / "codec.yaml", SMALL, resolve_config), exp, tiny_corpus / "mini_train"
    )
    assert torch.equal(load_codec(exp).codebooks, load_codec(trained).codebooks)


def test_encode_and_decode_a_data_dir_at_another_rate(trained, tiny_corpus, tmp_path):
    import soxr

    data = tmp_path / "data"
    DataDir(data).path.mkdir()
    sources = DataDir(tiny_corpus / "mini_dev").audio_sources()
    utts = sorted(sources)[:3]
    scp = {}
    for utt, rate in zip(utts, (8000, 24000, 48000), strict=False):
        wav = soxr.resample(sf.read(sources[utt][0], dtype="float32")[0], 16000, rate)
        sf.write(tmp_path / f"{utt}.wav", wav, rate)
        scp[utt] = str(tmp_path / f"{utt}.wav")
    DataDir(data).write("wav.scp", scp)
    summary = encode_datadir(trained, data, num_jobs=1)
    store = ArrayStore(data / "acoustic_codes")
    assert summary["utterances"] == 3 and store.meta["codec_kind"] == "world" and store.meta["n_codebooks"] == 8
    for utt in utts:
        assert store[utt].shape == (len(sf.read(sources[utt][0])[0]) // 320, 8)
    decode_codes(trained, data / "acoustic_codes", tmp_path / "out")
    out, rate = sf.read(tmp_path / "out" / "wav" / f"{utts[0]}.wav")
    assert rate == 16000 and len(out) == store[utts[0]].shape[0] * 320 and np.isfinite(out).all()


def test_encoding_the_train_set_reuses_the_training_analysis(trained, tiny_corpus, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        summary = encode_datadir(trained, tiny_corpus / "mini_train", tmp_path / "codes", num_jobs=2)
    assert "quantised from the WORLD features the codec was trained on" in caplog.text
    store = ArrayStore(tmp_path / "codes")
    assert summary["utterances"] == len(DataDir(tiny_corpus / "mini_train").audio_sources()) == len(store)
    utt = sorted(store.keys())[0]
    wav = torch.from_numpy(speech(tiny_corpus, "mini_train", 0))[None]
    assert np.array_equal(store[utt], load_codec(trained).encode(wav)[0].numpy()), "the same codes as a fresh analysis"


def test_silence_unvoiced_and_short_audio(trained):
    codec = load_codec(trained)
    silence = torch.zeros(1, 16000)
    codes = codec.encode(silence)
    assert codes.shape == (1, 50, 8) and int(codes[0, :, 1].max()) == 0, "silence is unvoiced throughout"
    assert torch.isfinite(codec.decode(codes)).all()
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32))[None]
    assert torch.isfinite(codec.decode(codec.encode(noise))).all()
    two = codec.encode(0.1 * torch.randn(1, 2 * 320 + 5))
    assert two.shape == (1, 2, 8) and codec.decode(two).shape == (1, 640)
    with pytest.raises(MetisError, match="shorter than one codec frame"):
        codec.encode(torch.zeros(1, 300))


def test_codes_out_of_range_name_the_utterance(trained, tmp_path):
    store = tmp_path / "codes"
    with ArrayWriter(store, "part-1") as writer:
        writer.write("bad_utt", np.full((10, 8), 300, dtype=np.int16))
    write_meta(store, kind="acoustic_codes")
    with pytest.raises(MetisError, match=r"utterance 'bad_utt': code values must be in 0\.\.31; got 300\.\.300"):
        decode_codes(trained, store, tmp_path / "out")
    with pytest.raises(MetisError, match="takes"):
        load_codec(trained).decode(torch.zeros(1, 10, 9, dtype=torch.long))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "wav.scp").write_text("")
    with pytest.raises(MetisError, match="wav.scp: no utterances to encode"):
        encode_datadir(trained, empty)
    (tmp_path / "no_codes").mkdir()
    write_meta(tmp_path / "no_codes", kind="acoustic_codes")
    with pytest.raises(MetisError, match="no codes to decode"):
        decode_codes(trained, tmp_path / "no_codes", tmp_path / "out2")


def test_expected_vector_decoding(trained, tiny_corpus):
    from metis_cli.infer.generate import resolve_codec_input

    codec = load_codec(trained)
    codes = codec.encode(torch.from_numpy(speech(tiny_corpus))[None])
    one_hot = torch.nn.functional.one_hot(codes, 32).float()
    assert torch.allclose(codec.decode_expected(one_hot), codec.decode(codes), atol=1e-5), (
        "certain codes: the codes themselves"
    )
    spread = one_hot.clone()
    spread[:, :, 7] = 1 / 32  # a codebook spread evenly: its mean entry
    assert torch.isfinite(codec.decode_expected(spread)).all()
    assert torch.allclose(codec.decode_expected(one_hot[:, :, :2]), codec.decode(codes[:, :, :2]), atol=1e-5)
    with pytest.raises(MetisError, match=r"code distributions of shape \(1, 5, 8, 16\)"):
        codec.decode_expected(torch.ones(1, 5, 8, 16))
    assert resolve_codec_input(codec, "auto") == "expected" and resolve_codec_input(codec, "codes") == "codes"
    with pytest.raises(MetisError, match="unknown codec input 'soft'"):
        resolve_codec_input(codec, "soft")


def test_bad_world_configs_are_refused(tiny_corpus, tmp_path):
    base = load_config(REPO / "conf" / "mini" / "codec.yaml")
    for key, value, message in (
        ("f0_method", "yin", "f0_method must be one of harvest, dio"),
        ("bap_edges", [100, 50], "bap_edges must rise from 0"),
        ("kind", "vocoder", "kind must be world or neural"),
    ):
        config = {**base, "model": {**base["model"], key: value}}
        with pytest.raises(MetisError, match=message):
            build_codec(config["model"])
    result = runner.invoke(
        app,
        [
            "codec",
            "train",
            str(REPO / "conf" / "mini" / "codec.yaml"),
            str(tmp_path / "x"),
            "model.quantizer.pitch_codebook=16",
            "--train-data",
            str(tiny_corpus / "mini_train"),
        ],
    )
    assert result.exit_code == 1 and "pitch_codebook must be empty or in 0..15, got 16" in result.output


def test_print_config_shows_the_world_codec_with_its_defaults(tmp_path):
    import yaml

    args = ["codec", "train", str(REPO / "conf" / "mini" / "codec.yaml"), str(tmp_path / "x"), "data.num_jobs=3"]
    result = runner.invoke(app, [*args, "--print-config"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["model"]["kind"] == "world" and shown["data"]["num_jobs"] == 3
    assert shown["train"] == {"seed": 0, "kmeans_backend": "auto"} and not (tmp_path / "x").exists()
    missing = runner.invoke(app, args)
    assert missing.exit_code == 1 and "give the training data: --train-data DIR" in missing.output


def test_s2a_of_output_vector_learns_the_codec_vector_and_decodes_it(trained, tmp_path):
    """conf/mini/s2a_vector.yaml: the codec's codebooks are copied into the model, the loss is the vector's mean
    squared error (falling, and below the vectors' spread), resynthesis decodes the vector ("vector" in
    decode.json), codes are refused."""
    import json

    from conftest import write_token_datadir

    from metis_cli.infer.generate import load_s2a
    from metis_cli.models.s2a import S2AVectorModel
    from metis_cli.train.s2a import S2ALearner, train_s2a

    data = {}
    for name, seed in (("train", 0), ("dev", 1)):
        data[name] = write_token_datadir(tmp_path / name, vocab=16, n_codebooks=8, codebook_size=32, seed=seed)
        write_meta(
            data[name] / "acoustic_codes", kind="acoustic_codes", codec=str(trained), codec_kind="world",
            n_codebooks=8, codebook_size=32,
        )  # fmt: skip
    small = [
        "model.transformer.dim=32", "model.transformer.n_layers=2", "model.transformer.n_heads=2",
        "model.transformer.ffn_dim=64", "model.transformer.dropout=0.0", "train.max_steps=40", "train.val_every=20",
        "train.log_every=20", "optim.warmup_steps=2", "data.val_utterances=12",
    ]  # fmt: skip
    exp = tmp_path / "s2a"
    config = REPO / "conf" / "mini" / "s2a_vector.yaml"
    train_s2a(load_config(config, small, S2ALearner.resolve), exp, [data["train"]], [data["dev"]])
    validation = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "val_mse" in line]
    codec = load_codec(trained)
    spread = float(sum(codec.codebooks[j][torch.randint(0, 32, (2000,))] for j in range(8)).var(0).mean())
    assert [v["step"] for v in validation] == [20, 40] and "acc" not in validation[0]
    assert validation[1]["val_mse"] < validation[0]["val_mse"] < 2 * spread
    (model,) = load_s2a([exp])
    assert isinstance(model, S2AVectorModel) and model.cfg.vector_dim == 34
    assert torch.equal(model.codebooks, codec.codebooks)

    out = tmp_path / "resynth"
    result = runner.invoke(app, ["resynth", str(data["dev"]), str(out), "--s2a", str(exp), "--codec", str(trained)])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "decode.json").read_text())
    assert info["codec_input"] == "vector" and info["s2a_settings"] == []  # one forward pass: no mask-predict
    half = tmp_path / "resynth_bf16"  # the model's copy of the codebooks in bf16 is still the codec's
    result = runner.invoke(
        app,
        ["resynth", str(data["dev"]), str(half), "--s2a", str(exp), "--codec", str(trained), "--bf16"]
        + ["--s2a-opt", "steps=[3,1]"],
    )
    assert result.exit_code == 0, result.output
    assert "S2A settings {'steps': [3, 1]} unused" in " ".join(result.output.split())
    assert json.loads((half / "decode.json").read_text())["dtype"] == "bfloat16"
    wav, sr = sf.read(out / "wav" / f"{sorted(ArrayStore(data['dev'] / 'ssl_tokens').keys())[0]}.wav")
    assert sr == 16000 and np.isfinite(wav).all() and len(wav) % 320 == 0
    refused = runner.invoke(
        app,
        ["resynth", str(data["dev"]), str(tmp_path / "r2"), "--s2a", str(exp), "--codec", str(trained)]
        + ["--codec-input", "codes"],
    )
    assert refused.exit_code != 0 and "picks no codes: use --codec-input auto" in refused.output

    write_meta(data["train"] / "acoustic_codes", kind="acoustic_codes", n_codebooks=8, codebook_size=32)
    with pytest.raises(MetisError, match="needs codes of the parametric WORLD codec"):
        train_s2a(load_config(config, small, S2ALearner.resolve), tmp_path / "b", [data["train"]])
