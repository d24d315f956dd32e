"""The phonetic front end: frame targets from phone timings, the model's shapes, training through the CLI,
the extractor's frame count, resuming, bad input."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.data.datadir import DataDir, TimedToken
from metis_cli.errors import MetisError
from metis_cli.ssl.extractors import MFCCExtractor, load_extractor
from metis_cli.ssl.phonetic import IGNORE, PhoneticConfig, PhoneticModel, frame_targets, load_model, utterance_norm

runner = CliRunner()
SMALL = ["model.dim=24", "model.n_layers=2", "model.bottleneck_dim=8", "train.max_steps=6", "data.batch_size=4"]


def test_frame_targets_split_each_phone_in_parts_and_ignore_frames_without_a_timing():
    timings = [TimedToken(0.0, 0.06, "a"), TimedToken(0.06, 0.12, "b"), TimedToken(0.18, 0.02, "zz")]
    phones = {"a": 0, "b": 1}
    got = frame_targets(timings, 12, phones, n_states=3)
    # a: frames 0-2 (one per part); b: frames 3-8 (two per part); "zz" is not in the inventory; 10-11 untimed
    assert got.tolist() == [0, 1, 2, 3, 3, 4, 4, 5, 5, IGNORE, IGNORE, IGNORE]
    assert frame_targets(timings, 2, phones, n_states=1).tolist() == [0, 0]  # cut at the frame count


def test_model_shapes_and_receptive_field():
    cfg = PhoneticConfig(dim=16, n_layers=3, bottleneck_dim=8, phones=["a", "b", "c"])
    model = PhoneticModel(cfg).eval()
    x = torch.randn(2, 37, 39)
    assert model.features(x).shape == (2, 37, 8) and model(x).shape == (2, 37, 9)
    assert cfg.receptive_field() == 2 + 2 * (1 + 2 + 4)
    with torch.no_grad():  # frames beyond the receptive field do not change an output
        far = x.clone()
        far[:, 30:] = 0
        assert torch.allclose(model(x)[:, :10], model(far)[:, :10], atol=1e-6)


def test_utterance_norm_gives_zero_mean_unit_variance_and_survives_one_frame():
    feats = np.random.default_rng(0).normal(3.0, 5.0, (50, 39))
    out = utterance_norm(feats)
    assert out.dtype == np.float32 and np.allclose(out.mean(0), 0, atol=1e-5) and np.allclose(out.std(0), 1, atol=1e-3)
    assert np.isfinite(utterance_norm(feats[:1])).all()


def test_speed_perturbation_changes_the_length_by_the_factor():
    from metis_cli.train.phonetic import speed

    wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    assert speed(wav, 1.0) is wav
    assert abs(len(speed(wav, 0.9)) - 16000 / 0.9) < 1 and abs(len(speed(wav, 1.1)) - 16000 / 1.1) < 1
    assert speed(wav, 0.9).dtype == np.float32


def test_noisy_copies_keep_the_clean_labels_and_are_drawn_the_same_each_time(tiny_corpus):
    from metis_cli.train.phonetic import load_labelled, phone_inventory

    data = tiny_corpus / "mini_dev"
    index = {p: i for i, p in enumerate(phone_inventory(data))}
    clean = load_labelled(data, index, 3)
    noisy = load_labelled(data, index, 3, speeds=(1.0, 1.1), noisy_copies=1, seed=5)
    assert sorted(noisy) == sorted(k for u in clean for k in (u, f"{u}-noisy0", f"{u}-sp1.1", f"{u}-sp1.1-noisy0"))
    for utt, (feats, labels) in clean.items():
        assert np.array_equal(noisy[utt][0], feats)  # the clean copy as before
        noisy_feats, noisy_labels = noisy[f"{utt}-noisy0"]
        assert np.array_equal(noisy_labels, labels) and noisy_feats.shape == feats.shape
        assert np.abs(noisy_feats - feats).mean() > 0.1  # another input
    again = load_labelled(data, index, 3, speeds=(1.0, 1.1), noisy_copies=1, seed=5)
    assert all(np.array_equal(again[k][0], noisy[k][0]) for k in noisy)
    other = load_labelled(data, index, 3, noisy_copies=1, seed=6)
    assert not all(np.array_equal(other[k][0], noisy[k][0]) for k in other if "-noisy" in k)


@pytest.fixture(scope="module")
def phonetic_exp(tiny_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("phonetic") / "exp"
    args = ["train-phonetic", str(tiny_corpus / "mini_train"), str(exp), *SMALL]
    args += ["--config", str(REPO / "conf/mini/phonetic.yaml"), "--dev", str(tiny_corpus / "mini_dev")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return exp


def test_training_writes_a_model_dir_the_extractor_reads(phonetic_exp, tiny_corpus):
    info = json.loads((phonetic_exp / "model" / "phonetic.json").read_text())
    phones = info["model"]["phones"]
    assert info["kind"] == "phonetic" and info["dim"] == 8 and len(phones) >= 10 and phones == sorted(phones)
    metrics = [json.loads(line) for line in (phonetic_exp / "metrics.jsonl").read_text().splitlines()]
    assert any("val_phone_acc" in m for m in metrics)
    extractor = load_extractor(str(phonetic_exp / "model"))
    wav, _ = DataDir(tiny_corpus / "mini_test").load_audio(DataDir(tiny_corpus / "mini_test").utt_ids()[0])
    # odd lengths, down to 2 frames: one feature frame per MFCC frame (the SSL token rate)
    for n in (len(wav), len(wav) - 161, 4000 + 17, 700):
        feats = extractor(wav[:n])
        assert feats.shape == (len(MFCCExtractor()(wav[:n])), 8) and np.isfinite(feats).all()
    assert np.array_equal(extractor(wav), extractor(wav))


def test_extract_ssl_accepts_the_model_dir_without_a_layer(phonetic_exp, tiny_corpus, tmp_path):
    out = tmp_path / "feats"
    args = ["extract-ssl", str(tiny_corpus / "mini_dev"), str(out), "--extractor", str(phonetic_exp / "model")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "x 8 dims" in result.output and (out / ".done").is_file()


def test_a_rerun_resumes_and_trains_no_further_and_another_config_is_refused(phonetic_exp, tiny_corpus):
    before = (phonetic_exp / "model" / "phonetic.safetensors").read_bytes()
    args = ["train-phonetic", str(tiny_corpus / "mini_train"), str(phonetic_exp), *SMALL]
    args += ["--config", str(REPO / "conf/mini/phonetic.yaml"), "--dev", str(tiny_corpus / "mini_dev")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "step 6" in result.output
    assert (phonetic_exp / "model" / "phonetic.safetensors").read_bytes() == before
    result = runner.invoke(app, [*args, "model.dropout=0.5"])
    assert result.exit_code == 1 and "holds a run with another config (model.dropout: 0.1 -> 0.5)" in result.output


def test_a_data_dir_without_phone_timings_is_refused(datadir, tmp_path):
    args = ["train-phonetic", str(datadir), str(tmp_path / "exp"), "--config", str(REPO / "conf/mini/phonetic.yaml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"{datadir}/phones.ctm: not found" in result.output and "Traceback" not in result.output


def test_a_truncated_model_dir_is_refused_with_the_fix(phonetic_exp, tmp_path):
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "phonetic.json").write_text((phonetic_exp / "model" / "phonetic.json").read_text())
    (broken / "phonetic.safetensors").write_bytes((phonetic_exp / "model" / "phonetic.safetensors").read_bytes()[:100])
    with pytest.raises(MetisError, match="not a readable phonetic model .*rerun `metis train-phonetic`"):
        load_model(broken)
