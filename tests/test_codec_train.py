"""Training the codec with the shared Trainer: a real step, exact resume, safe checkpoints, encode/decode."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, make_datadir
from typer.testing import CliRunner

from metis_cli.audio import resample as soxr_resample
from metis_cli.cli import app
from metis_cli.codec.inference import decode_codes, encode_datadir, load_codec
from metis_cli.config import apply_overrides, load_config
from metis_cli.data.arrays import ArrayStore
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.train.codec import AudioSegments, resolve_config, train_codec

runner = CliRunner()
FAST = [
    "data.batch_size=2",
    "data.segment_seconds=0.32",
    "train.log_every=1",
    "train.ckpt_every=1",
    "train.val_every=1000",
    "optim.warmup_steps=2",
]


def mini_config(*overrides):
    return load_config(REPO / "conf" / "mini" / "codec_neural.yaml", FAST + list(overrides), resolve_config)


def metrics(exp):
    return [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "total" in line]


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("codec") / "exp"
    train_codec(mini_config("train.max_steps=3"), exp, tiny_corpus / "mini_train", tiny_corpus / "mini_dev")
    return exp


def test_training_steps_are_finite_and_recorded(trained):
    rows = metrics(trained)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r[k]) for r in rows for k in ("mel", "stft", "commitment", "codebook", "total", "grad_norm"))
    assert (
        (trained / "config.yaml").is_file()
        and (trained / "command.txt").is_file()
        and (trained / "git_revision.txt").is_file()
    )
    saved = load_config(trained / "config.yaml")  # in full: the code's defaults of every section
    assert saved["model"]["kind"] == "neural" and saved["model"]["quantizer"]["restart_every"] == 50
    assert saved["loss"]["mel"] == {} and saved["train"]["bf16_cpu"] is False
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == [
        "step_00000001",
        "step_00000002",
        "step_00000003",
    ]
    assert len(list((trained / "val" / "step_00000003").glob("*.wav"))) == 4


def test_resume_reproduces_the_next_loss(trained, tiny_corpus, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(trained, exp)
    shutil.rmtree(exp / "checkpoints" / "step_00000003")
    (exp / "metrics.jsonl").write_text("")
    train_codec(mini_config("train.max_steps=3"), exp, tiny_corpus / "mini_train")
    assert metrics(exp)[0]["step"] == 3
    assert metrics(exp)[0]["total"] == pytest.approx(metrics(trained)[-1]["total"], rel=1e-5)


def test_the_same_seed_gives_the_same_run(trained, tiny_corpus, tmp_path):
    """Initial weights and batches come from the seed: a second run's first step has the same loss."""
    train_codec(mini_config("train.max_steps=1"), tmp_path / "again", tiny_corpus / "mini_train")
    assert metrics(tmp_path / "again")[0]["total"] == pytest.approx(metrics(trained)[0]["total"], rel=1e-6)
    train_codec(mini_config("train.max_steps=1", "train.seed=1"), tmp_path / "seed1", tiny_corpus / "mini_train")
    assert metrics(tmp_path / "seed1")[0]["total"] != pytest.approx(metrics(trained)[0]["total"], rel=1e-3)


def test_truncated_checkpoint_falls_back_to_the_previous_one(trained, tiny_corpus, tmp_path, caplog):
    exp = tmp_path / "exp"
    shutil.copytree(trained, exp)
    newest = exp / "checkpoints" / "step_00000003" / "codec.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        model = load_codec(exp)
    assert "step_00000003 is unreadable" in caplog.text
    from safetensors.torch import load_file

    expected = load_file(str(exp / "checkpoints" / "step_00000002" / "codec.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    (exp / "metrics.jsonl").write_text("")
    train_codec(mini_config("train.max_steps=3"), exp, tiny_corpus / "mini_train")
    assert metrics(exp)[0]["step"] == 3, "training resumed from step 2 and redid step 3"


def test_checkpoints_load_without_unpickling(trained):
    state = torch.load(trained / "checkpoints" / "step_00000003" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 3 and "generator" in state["optimizers"]


def test_discriminators_train_too(tiny_corpus, tmp_path):
    result = train_codec(
        mini_config("train.max_steps=1", "discriminator.enabled=true"), tmp_path / "gan", tiny_corpus / "mini_train"
    )
    row = metrics(tmp_path / "gan")[0]
    assert result["step"] == 1 and all(
        np.isfinite(row[k]) for k in ("discriminator", "adversarial", "feature_matching")
    )


def test_encode_decode_a_data_dir(trained, tiny_corpus, tmp_path):
    result = runner.invoke(
        app,
        [
            "codec",
            "encode",
            str(trained),
            str(tiny_corpus / "mini_test"),
            "--out",
            str(tmp_path / "codes"),
            "--nj",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    store = ArrayStore(tmp_path / "codes")
    durations = DataDir(tiny_corpus / "mini_test").read("utt2dur")
    for utt in store.keys():
        assert store[utt].shape == (int(np.ceil(float(durations[utt]) * 50 - 1e-6)), 8) and store[utt].dtype == np.int16
    assert store.meta["n_codebooks"] == 8 and store.meta["sample_rate"] == 16000
    result = runner.invoke(app, ["codec", "decode", str(trained), str(tmp_path / "codes"), str(tmp_path / "resynth")])
    assert result.exit_code == 0, result.output
    wav_scp = DataDir(tmp_path / "resynth").read("wav.scp")
    assert sorted(wav_scp) == store.keys()
    again = encode_datadir(trained, tiny_corpus / "mini_test", tmp_path / "codes")
    assert again["utterances"] == 6, "a finished store is reused"


def test_bad_codes_name_the_utterance(trained, tmp_path):
    from metis_cli.data.arrays import ArrayWriter

    with ArrayWriter(tmp_path / "codes", "part-1") as w:
        w.write("u1", np.full((5, 8), 2000, dtype=np.int16))
    with pytest.raises(MetisError, match=r"utterance 'u1': code values must be in 0..1023"):
        decode_codes(trained, tmp_path / "codes", tmp_path / "out")


def test_other_sample_rates_are_resampled_and_said_once(tmp_path, caplog):
    dd = make_datadir(tmp_path)
    import soundfile as sf

    for wav in (tmp_path / "wav").glob("*.wav"):
        data, rate = sf.read(wav)
        sf.write(wav, np.repeat(data, 3), rate * 3)
    with caplog.at_level(logging.INFO):
        segments = AudioSegments(dd, 16000, 3200)
        batch = segments.batch(np.random.default_rng(0), 4)
    assert batch.shape == (4, 3200)
    assert caplog.text.count("resampling") == 1 and "48000 Hz to the codec's 16000 Hz" in caplog.text


def test_segments_past_the_cache_are_read_from_the_files_alone(tmp_path):
    """The same seed draws the same segments whether the audio is cached or read segment by segment; at the
    codec's rate they are the same samples, and from a file at another rate the same to float precision
    (read from a point on both sample grids, with a margin); the cache never holds more than its budget."""
    import soundfile as sf

    dd = make_datadir(tmp_path / "a")
    cached, direct = AudioSegments(dd, 16000, 1600, cache_gb=1.0), AudioSegments(dd, 16000, 1600, cache_gb=0)
    a, b = cached.batch(np.random.default_rng(3), 8), direct.batch(np.random.default_rng(3), 8)
    assert a.shape == b.shape == (8, 1600) and a.abs().sum() > 0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert cached.cache and cached.cache_bytes == sum(w.nbytes for w in cached.cache.values()) and not direct.cache
    one = next(iter(cached.cache.values())).nbytes
    bounded = AudioSegments(dd, 16000, 1600, cache_gb=1.5 * one / 2**30)
    bounded.batch(np.random.default_rng(3), 8)
    assert len(bounded.cache) == 1 and bounded.cache_bytes <= 1.5 * one
    for wav in (tmp_path / "a" / "wav").glob("*.wav"):  # the same audio at 24 kHz
        data, rate = sf.read(wav)
        sf.write(wav, soxr_resample(data, rate, 24000), 24000)
    cached, direct = AudioSegments(dd, 16000, 1600, cache_gb=1.0), AudioSegments(dd, 16000, 1600, cache_gb=0)
    c, d = cached.batch(np.random.default_rng(3), 8), direct.batch(np.random.default_rng(3), 8)
    assert (c - d).abs().max() < 1e-5 and (c - a).abs().max() < 0.05


def test_config_overrides_are_checked():
    from metis_cli.train.codec import resolve_config

    config = resolve_config(mini_config())  # the YAML and the code's defaults, as `metis codec train` reads it
    assert apply_overrides(config, ["train.max_steps=7"])["train"]["max_steps"] == 7
    with pytest.raises(MetisError, match="unknown key 'train.max_step'"):
        apply_overrides(config, ["train.max_step=7"])
    with pytest.raises(MetisError, match="is not key=value"):
        apply_overrides(config, ["train.max_steps"])
    # values take the type of what they replace
    with pytest.raises(
        MetisError,
        match=r"override 'train.max_steps=abc': train.max_steps takes an integer \(the config has \d+\), not 'abc'",
    ):
        apply_overrides(config, ["train.max_steps=abc"])
    with pytest.raises(MetisError, match="takes an integer"):
        apply_overrides(config, ["train.max_steps=2.5"])
    with pytest.raises(MetisError, match="takes true or false"):
        apply_overrides(config, ["train.bf16=1"])
    typed = apply_overrides(config, ["optim.lr=1e-4", "train.max_steps=3.0", "optim.weight_decay=0"])
    assert (
        typed["optim"]["lr"] == 1e-4
        and typed["train"]["max_steps"] == 3
        and isinstance(typed["optim"]["weight_decay"], float)
    )


def test_unknown_data_optim_and_ema_keys_are_refused(tmp_path):
    from metis_cli.train.pretrain import pretrain

    config = yaml.safe_load((REPO / "conf" / "mini" / "pretrain.yaml").read_text())
    for section, typo in (("data", "max_frame"), ("optim", "learning_rate"), ("ema", "decay_rate")):
        bad = {**config, section: {**(config.get(section) or {}), typo: 1}}
        with pytest.raises(MetisError, match=rf"stage1 config {section}: unknown key\(s\) {typo}"):
            pretrain(bad, tmp_path / section, [tmp_path])
