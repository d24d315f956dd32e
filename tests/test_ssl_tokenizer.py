"""Stage 1-2: SSL extractors, feature stores, k-means, tokens, their quality, resumption, bad input."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.data.arrays import ArrayStore, ArrayWriter
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.ssl.extract import extract_ssl, load_stats, save_stats
from metis_cli.ssl.extractors import MFCCExtractor, TooShortError, load_extractor
from metis_cli.tokenizer.kmeans import learn_kmeans, train_kmeans
from metis_cli.tokenizer.quality import token_quality
from metis_cli.tokenizer.tokenize import tokenize

runner = CliRunner()
SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def train_feats(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl") / "mini_train"
    result = runner.invoke(app, ["extract-ssl", str(tiny_corpus / "mini_train"), str(out), "--nj", "2"])
    assert result.exit_code == 0, result.output
    return out


def _tiny_w2v_bert(path):
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    config = Wav2Vec2BertConfig(
        **SMALL, output_hidden_size=32, conv_depthwise_kernel_size=3, feature_projection_input_dim=160
    )
    Wav2Vec2BertModel(config).save_pretrained(path)
    SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2, sampling_rate=16000).save_pretrained(path)


def _tiny_hubert(path):
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(
        **SMALL,
        conv_dim=(32, 32),
        conv_stride=(5, 64),
        conv_kernel=(10, 64),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    HubertModel(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=True).save_pretrained(path)


def test_mfcc_shape_rate_and_determinism(tiny_corpus):
    wav, _ = DataDir(tiny_corpus / "mini_test").load_audio(DataDir(tiny_corpus / "mini_test").utt_ids()[0])
    feats = MFCCExtractor()(wav)
    assert feats.shape == (len(wav) // 320, 39) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, MFCCExtractor()(wav))
    with pytest.raises(TooShortError, match="shorter than one frame"):
        MFCCExtractor()(np.zeros(100, dtype=np.float32))


@pytest.mark.parametrize("make", [_tiny_w2v_bert, _tiny_hubert], ids=["w2v-bert", "hubert"])
def test_transformers_layer_matches_the_models_own_hidden_states(make, tmp_path, tiny_corpus):
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    torch.manual_seed(0)
    make(tmp_path / "model")
    dd = DataDir(tiny_corpus / "mini_test")
    wav = dd.load_audio(dd.utt_ids()[0])[0]
    model = AutoModel.from_pretrained(tmp_path / "model").eval()
    inputs = AutoFeatureExtractor.from_pretrained(tmp_path / "model")(wav, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    for layer in (0, 2, 3):
        ours = load_extractor(str(tmp_path / "model"), layer)(wav)
        np.testing.assert_allclose(ours, hidden[layer][0].numpy(), atol=1e-4)
    assert abs(len(hidden[0][0]) - len(wav) / 320) <= 2, "50 frames per second"
    result = runner.invoke(
        app,
        [
            "extract-ssl",
            str(tiny_corpus / "mini_test"),
            str(tmp_path / "feats"),
            "--extractor",
            str(tmp_path / "model"),
            "--layer",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    store = ArrayStore(tmp_path / "feats")
    assert len(store) == 6 and store[store.keys()[0]].shape[1] == 32


def test_bad_model_dirs_and_layers(tmp_path):
    _tiny_hubert(tmp_path / "hubert")
    with pytest.raises(MetisError, match=r"layer 4 is out of range: hidden_states has indices 0..3"):
        load_extractor(str(tmp_path / "hubert"), 4)
    with pytest.raises(MetisError, match="choose a hidden layer with --layer"):
        load_extractor(str(tmp_path / "hubert"))
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(MetisError, match="model type 'bert' is not a supported SSL model"):
        load_extractor(str(tmp_path / "bert"), 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetisError, match="no config.json"):
        load_extractor(str(tmp_path / "empty"), 1)
    with pytest.raises(MetisError, match="no such model directory"):
        load_extractor(str(tmp_path / "missing"), 1)


def test_feature_store_and_stats(train_feats, tiny_corpus):
    store = ArrayStore(train_feats)
    assert store.keys() == DataDir(tiny_corpus / "mini_train").utt_ids()
    assert {e.shard for e in store.entries.values()} == {"part-1", "part-2"}
    allfeats = np.concatenate([store[u].astype(np.float64) for u in store.keys()])
    # Stats over the whole (tiny) set: normalised features have zero mean and unit variance.
    np.testing.assert_allclose(allfeats.mean(0), 0, atol=0.01)
    np.testing.assert_allclose(allfeats.std(0), 1, atol=0.01)
    mean, var = load_stats(train_feats / "stats.safetensors")
    assert mean.shape == var.shape == (39,) and mean.dtype == np.float32
    config = json.loads((train_feats / "ssl.json").read_text())
    assert config["extractor"] == "builtin" and config["dim"] == 39
    assert len((train_feats / "log" / "extract.1.log").read_text().splitlines()) == 6


def test_stats_round_trip_and_stats_from_elsewhere(tmp_path, tiny_corpus):
    mean, var = np.arange(39, dtype=np.float32), np.full(39, 4.0, dtype=np.float32)
    save_stats(tmp_path / "s.safetensors", mean, var)
    back = load_stats(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(back[0], mean)
    np.testing.assert_array_equal(back[1], var)
    extract_ssl(tiny_corpus / "mini_dev", tmp_path / "dev", stats=str(tmp_path / "s.safetensors"))
    utt = DataDir(tiny_corpus / "mini_dev").utt_ids()[0]
    raw = MFCCExtractor()(DataDir(tiny_corpus / "mini_dev").load_audio(utt)[0])
    np.testing.assert_allclose(ArrayStore(tmp_path / "dev")[utt], (raw - mean) / 2.0, rtol=2e-3, atol=2e-2)


def test_resume_after_a_kill_gives_identical_output(train_feats, tiny_corpus, tmp_path):
    copy = tmp_path / "feats"
    shutil.copytree(train_feats, copy)
    idx = copy / "part-2.idx"
    lines = idx.read_text().splitlines(keepends=True)
    idx.write_text("".join(lines[:2]))  # killed after two utterances of shard 2 ...
    with open(copy / "part-2.bin", "ab") as f:
        f.write(b"\x00" * 1000)  # ... in the middle of writing the third
    (copy / ".done").unlink()
    summary = extract_ssl(tiny_corpus / "mini_train", copy, num_jobs=2)
    assert summary["utterances"] == 12
    original, resumed = ArrayStore(train_feats), ArrayStore(copy)
    for utt in original.keys():
        np.testing.assert_array_equal(original[utt], resumed[utt])
    assert (copy / "part-2.bin").stat().st_size == (train_feats / "part-2.bin").stat().st_size


def test_one_bad_utterance_is_skipped_and_listed(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus / "mini_dev", data)
    wav_scp = DataDir(data).read("wav.scp")
    bad = sorted(wav_scp)[1]
    DataDir(data).write("wav.scp", {**wav_scp, bad: str(tmp_path / "gone.wav")})
    result = runner.invoke(app, ["extract-ssl", str(data), str(tmp_path / "feats")])
    assert result.exit_code == 0, result.output
    assert "1 failed" in result.output
    assert (tmp_path / "feats" / "failed").read_text().startswith(f"{bad}\t")
    assert len(ArrayStore(tmp_path / "feats")) == 3


def test_normalisation_is_the_published_formula():
    from metis_cli.ssl.extract import normalize

    rng = np.random.default_rng(0)
    x, mean, var = (
        rng.normal(size=(5, 4)).astype(np.float32),
        rng.normal(size=4).astype(np.float32),
        rng.uniform(0.01, 4, 4).astype(np.float32),
    )
    np.testing.assert_array_equal(
        normalize(x, mean, var), ((x - mean) / np.sqrt(var)).astype(np.float16)
    )  # float32, no epsilon
    var[2] = 0.0  # a constant dimension is centred, not divided by zero
    out = normalize(x, mean, var)
    assert np.isfinite(out).all() and np.allclose(out[:, 2], (x[:, 2] - mean[2]).astype(np.float16))


def test_kmeans_recovers_known_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(5, 8)).astype(np.float32)
    labels = rng.integers(0, 5, 2000)
    points = centres[labels] + rng.normal(0, 0.3, size=(2000, 8)).astype(np.float32)
    for backend in ("torch", "faiss"):
        centroids, objective = learn_kmeans(points, 5, iters=10, seed=3, backend=backend)
        nearest = np.argmin(((centres[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        assert sorted(nearest.tolist()) == [0, 1, 2, 3, 4], backend
        np.testing.assert_allclose(centroids[nearest], centres, atol=0.1)
        assert objective[-1] <= objective[0]
    with pytest.raises(MetisError, match="cannot make 5000 clusters"):
        learn_kmeans(points, 5000)


def test_tokens_deterministic_from_features_and_audio(train_feats, tiny_corpus, tmp_path):
    result = runner.invoke(
        app, ["kmeans", str(train_feats), str(tmp_path / "km"), "--n-clusters", "20", "--portion", "1.0"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "km" / "kmeans.json").read_text())
    assert config["backend"] == "torch" and config["ssl"]["extractor"] == "builtin"
    for name in ("a", "b"):
        result = runner.invoke(
            app, ["tokenize", str(tmp_path / name), "--kmeans", str(tmp_path / "km"), "--feats", str(train_feats)]
        )
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "tokenize",
            str(tmp_path / "audio"),
            "--kmeans",
            str(tmp_path / "km"),
            "--data",
            str(tiny_corpus / "mini_train"),
        ],
    )
    assert result.exit_code == 0, result.output
    a, b, c = (ArrayStore(tmp_path / n) for n in ("a", "b", "audio"))
    assert a.keys() == b.keys() == c.keys()
    for utt in a.keys():
        np.testing.assert_array_equal(a[utt], b[utt])
        np.testing.assert_array_equal(a[utt], c[utt])  # from audio: the stored features' float16 rounding too
        assert a[utt].dtype == np.int16 and a[utt].max() < 20
    first = (tmp_path / "a" / "text.km").read_text().splitlines()[0].split()
    assert first[0] == a.keys()[0] and [int(t) for t in first[1:]] == a[a.keys()[0]].tolist()
    # a data dir without audio, or whose audio all fails, produces nothing: exit 1, not an empty store
    no_audio = tmp_path / "no_audio"
    no_audio.mkdir()
    shutil.copy(tiny_corpus / "mini_train" / "utt2spk", no_audio / "utt2spk")
    result = runner.invoke(
        app, ["tokenize", str(tmp_path / "none"), "--kmeans", str(tmp_path / "km"), "--data", str(no_audio)]
    )
    assert result.exit_code == 1 and "wav.scp: not found" in result.output and not (tmp_path / "none").exists()
    (no_audio / "wav.scp").write_text(
        "".join(f"{u} {tmp_path}/gone.wav\n" for u in (no_audio / "utt2spk").read_text().split()[::2])
    )
    result = runner.invoke(
        app, ["tokenize", str(tmp_path / "none"), "--kmeans", str(tmp_path / "km"), "--data", str(no_audio)]
    )
    assert result.exit_code == 1 and "utterances could be tokenized" in " ".join(result.output.split())


def test_wrong_feature_dimension_is_an_error(train_feats, tmp_path):
    rng = np.random.default_rng(0)
    from safetensors.numpy import save_file

    (tmp_path / "km").mkdir()
    save_file({"centroids": rng.normal(size=(4, 16)).astype(np.float32)}, str(tmp_path / "km" / "kmeans.safetensors"))
    with pytest.raises(MetisError, match=r"features of shape \(\d+, 39\) do not match the k-means model .*16 dims"):
        tokenize(tmp_path / "tok", tmp_path / "km", feats_dir=train_feats)


def test_token_quality_on_the_corpus(train_feats, tiny_corpus, tmp_path):
    train_kmeans(train_feats, tmp_path / "km", n_clusters=30, portion=1.0)
    tokenize(tmp_path / "tok", tmp_path / "km", feats_dir=train_feats)
    report = token_quality(tmp_path / "tok", phones_ctm=tiny_corpus / "mini_train" / "phones.ctm")
    assert report["n_clusters"] == 30 and report["clusters_used"] >= 25
    assert 1 < report["perplexity"] <= 30
    assert 0.3 < report["pnmi"] < 1 and 0 < report["phone_purity"] <= 1 and 0 < report["cluster_purity"] <= 1
    result = runner.invoke(
        app, ["token-report", str(tmp_path / "tok"), "--phones", str(tiny_corpus / "mini_train" / "phones.ctm")]
    )
    assert result.exit_code == 0 and "pnmi" in result.output


def test_array_writer_refuses_nothing_and_reads_back(tmp_path):
    with ArrayWriter(tmp_path, "part-1") as w:
        w.write("u1", np.arange(6, dtype=np.int16).reshape(2, 3))
        w.write("u2", np.ones(4, dtype=np.float32))
    store = ArrayStore(tmp_path)
    assert store["u1"].tolist() == [[0, 1, 2], [3, 4, 5]] and store["u2"].dtype == np.float32
    with pytest.raises(MetisError, match="no array for utterance 'u3'"):
        store["u3"]
