"""The VQ SSL tokenizer: sizes, state-dict layout, training through the CLI, tokenizing, bad input."""

import json
import math

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.codec.model import Codec, CodecConfig, ConvNeXtBackbone
from metis_cli.data.arrays import ArrayStore, ArrayWriter
from metis_cli.errors import MetisError
from metis_cli.models.transformer import count_parameters
from metis_cli.tokenizer import load_tokenizer
from metis_cli.tokenizer.kmeans import FeatureDimensionError, KMeansModel
from metis_cli.tokenizer.tokenize import tokenize
from metis_cli.tokenizer.vq import VQConfig, VQTokenizer, VQTokenizerModel

runner = CliRunner()
DIM = 12
TINY = dict(input_dim=DIM, dim=16, intermediate_dim=32, n_layers=2, codebook_size=16, codebook_dim=4)
TRAIN_OVERRIDES = [
    "model.dim=16",
    "model.intermediate_dim=32",
    "model.n_layers=2",
    "model.codebook_size=16",
    "model.codebook_dim=4",
    "data.segment_frames=20",
    "data.batch_size=4",
    "data.val_utterances=3",
    "train.max_steps=4",
    "train.log_every=1",
    "train.ckpt_every=2",
    "train.val_every=4",
    "optim.warmup_steps=2",
]


def write_features(path, dim=DIM, n_utts=6, seed=0):
    """A feature store like `metis extract-ssl` writes (float16 arrays, ssl.json), with random features."""
    from metis_cli.ssl.extract import save_stats

    rng = np.random.default_rng(seed)
    with ArrayWriter(path, "part-1") as writer:
        for i in range(n_utts):
            writer.write(f"utt{i:02d}", rng.normal(size=(30 + 7 * i, dim)).astype(np.float16))
    save_stats(path / "stats.safetensors", np.zeros(dim, dtype=np.float32), np.ones(dim, dtype=np.float32))
    ssl = {
        "extractor": "builtin",
        "layer": None,
        "frame_rate": 50,
        "dim": dim,
        "stats": str(path / "stats.safetensors"),
    }
    (path / "ssl.json").write_text(json.dumps(ssl))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(features, experiment dir) after `metis train-vq` on a tiny random feature store."""
    root = tmp_path_factory.mktemp("vq")
    feats = write_features(root / "feats")
    exp = root / "exp"
    result = runner.invoke(
        app,
        [
            "train-vq",
            str(feats),
            str(exp),
            *TRAIN_OVERRIDES,
            "--config",
            str(REPO / "conf/mini/vq.yaml"),
            "--val-feats",
            str(feats),
        ],
    )
    assert result.exit_code == 0, result.output
    return feats, exp


def test_full_config_parameter_count():
    cfg = VQConfig.from_dict(yaml.safe_load((REPO / "conf/full/vq.yaml").read_text())["model"])
    count = count_parameters(VQTokenizerModel(cfg))
    print("full VQ tokenizer parameters:", count)
    block = (
        (384 * 7 + 384) + 2 * 384 + (384 * 2048 + 2048) + (2048 * 384 + 384) + 384
    )  # dwconv, norm, pwconv1, pwconv2, gamma
    backbone = (1024 * 384 * 7 + 384) + 2 * 384 + 12 * block + 2 * 384  # embed, norm, blocks, final_norm
    projection = backbone + 384 * 1024 + 1024
    quantizer = (8 + 8 * 1024 + 8) + (1024 + 1024 * 8 + 1024) + 8192 * 8  # in_proj (g, v, bias), out_proj, codebook
    assert count == 2 * projection + quantizer == 44_289_808
    assert (cfg.input_dim, cfg.codebook_size, cfg.codebook_dim, cfg.commitment_weight) == (1024, 8192, 8, 0.15)


def test_convnext_backbone_shapes():
    torch.manual_seed(0)
    backbone = ConvNeXtBackbone(5, 16, 32, 3)
    out = backbone(torch.randn(2, 5, 13))
    assert out.shape == (2, 16, 13)
    # The final LayerNorm (unit weight, zero bias at init) normalises each frame over the channels.
    torch.testing.assert_close(out.mean(1), torch.zeros(2, 13), atol=1e-5, rtol=0)
    assert len(backbone.blocks) == 3 and float(backbone.blocks[0].gamma[0].detach()) == pytest.approx(1 / 3)
    assert backbone(torch.randn(1, 5, 1)).shape == (1, 16, 1)


def test_codec_decoder_state_dict_keys_unchanged():
    cfg = CodecConfig.from_dict(
        {
            "sample_rate": 16000,
            "encoder": {"channels": 4, "strides": [2, 2], "latent_dim": 8},
            "quantizer": {"n_codebooks": 1, "codebook_size": 4},
            "decoder": {"dim": 8, "intermediate_dim": 16, "n_layers": 2, "n_fft": 16},
        }
    )
    keys = [k for k in Codec(cfg).state_dict() if k.startswith("decoder.")]
    block = [
        "gamma",
        "dwconv.weight",
        "dwconv.bias",
        "norm.weight",
        "norm.bias",
        "pwconv1.weight",
        "pwconv1.bias",
        "pwconv2.weight",
        "pwconv2.bias",
    ]
    assert keys == (
        ["decoder.embed.weight", "decoder.embed.bias", "decoder.norm.weight", "decoder.norm.bias"]
        + [f"decoder.blocks.{i}.{name}" for i in range(2) for name in block]
        + ["decoder.final_norm.weight", "decoder.final_norm.bias", "decoder.head.out.weight", "decoder.head.out.bias"]
    )


def test_vq_model_state_dict_layout():
    model = VQTokenizerModel(VQConfig(**{**TINY, "n_layers": 1}))
    block = [
        "dwconv.bias",
        "dwconv.weight",
        "gamma",
        "norm.bias",
        "norm.weight",
        "pwconv1.bias",
        "pwconv1.weight",
        "pwconv2.bias",
        "pwconv2.weight",
    ]
    coder = lambda part: (
        [f"{part}.backbone.blocks.0.{n}" for n in block]  # noqa: E731
        + [
            f"{part}.backbone.{n}"
            for n in ("embed.bias", "embed.weight", "final_norm.bias", "final_norm.weight", "norm.bias", "norm.weight")
        ]
        + [f"{part}.proj.bias", f"{part}.proj.weight"]
    )
    quantizer = [
        "quantizer.calls",
        "quantizer.codebook.weight",
        "quantizer.in_proj.bias",
        "quantizer.in_proj.parametrizations.weight.original0",
        "quantizer.in_proj.parametrizations.weight.original1",
        "quantizer.out_proj.bias",
        "quantizer.out_proj.parametrizations.weight.original0",
        "quantizer.out_proj.parametrizations.weight.original1",
        "quantizer.usage",
    ]
    state = model.state_dict()
    print("\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(state.items())))
    assert sorted(state) == sorted(coder("decoder") + coder("encoder") + quantizer)
    assert state["quantizer.codebook.weight"].shape == (16, 4) and state["encoder.proj.weight"].shape == (DIM, 16)
    out = model(torch.randn(2, 9, DIM))
    assert out["reconstruction"].shape == (2, 9, DIM) and out["codes"].shape == (2, 9)


def test_train_vq_writes_a_tokenizer_dir(trained):
    feats, exp = trained
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "total" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for r in train:
        assert all(
            math.isfinite(r[k]) for k in ("reconstruction", "codebook", "commitment", "total", "code_perplexity")
        )
        assert r["total"] == pytest.approx(r["reconstruction"] + r["codebook"] + 0.15 * r["commitment"], rel=1e-5)
        assert 1 <= r["codes_used"] <= 16
    assert any("val_reconstruction" in r for r in records)
    info = json.loads((exp / "tokenizer" / "vq.json").read_text())
    assert (info["tokenizer"], info["n_clusters"], info["dim"], info["model"]["input_dim"]) == ("vq", 16, DIM, DIM)
    assert info["ssl"] == json.loads((feats / "ssl.json").read_text())
    assert info["training"]["step"] == 4 and math.isfinite(info["training"]["train"]["total"])
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["features"]["train"] == str(feats.resolve())
    assert saved["optim"]["betas"] == [0.9, 0.99] and saved["data"]["segment_frames"] == 20  # defaults and overrides
    result = runner.invoke(
        app, ["train-vq", str(feats), str(exp), *TRAIN_OVERRIDES, "--config", str(REPO / "conf/mini/vq.yaml")]
    )
    assert result.exit_code == 0 and "step 4" in result.output, (
        "a finished run resumes at its last step and trains no more"
    )


def test_the_same_seed_gives_the_same_tokenizer(trained, tmp_path):
    from safetensors.numpy import load_file

    feats, exp = trained
    result = runner.invoke(
        app,
        [
            "train-vq",
            str(feats),
            str(tmp_path / "again"),
            *TRAIN_OVERRIDES,
            "--config",
            str(REPO / "conf/mini/vq.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    first, again = (load_file(str(d / "tokenizer" / "vq.safetensors")) for d in (exp, tmp_path / "again"))
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)


def test_assign_matches_the_models_quantizer(trained):
    feats, exp = trained
    tokenizer = VQTokenizer(exp / "tokenizer")
    assert tokenizer.n_clusters == 16 and tokenizer.dir == exp / "tokenizer" and tokenizer.config["n_clusters"] == 16
    model = VQTokenizerModel(VQConfig(**{**TINY, "dead_code_threshold": 0.1}))
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(exp / "tokenizer" / "vq.safetensors")))
    model.eval()
    store = ArrayStore(feats)
    for utt in store.keys()[:3]:
        x = torch.from_numpy(np.asarray(store[utt], dtype=np.float32))
        tokens = tokenizer.assign(store[utt], utt)
        assert tokens.dtype == np.int16 and tokens.shape == (len(x),)
        assert 0 <= tokens.min() and tokens.max() < 16
        with torch.no_grad():
            e = model.quantizer.in_proj(model.encoder(x.T[None]))[0].T
            expected = (
                torch.nn.functional.normalize(e, dim=-1)
                @ torch.nn.functional.normalize(model.quantizer.codebook.weight, dim=-1).T
            ).argmax(-1)
        np.testing.assert_array_equal(tokens, expected.numpy())
    assert tokenizer.assign(np.zeros((0, DIM)), "empty").shape == (0,)


def test_tokenize_with_vq(trained, tmp_path):
    feats, exp = trained
    result = runner.invoke(
        app,
        [
            "tokenize",
            str(tmp_path / "tok"),
            "--model",
            str(exp / "tokenizer"),
            "--tokenizer",
            "vq",
            "--feats",
            str(feats),
        ],
    )
    assert result.exit_code == 0, result.output
    tokens, store, tokenizer = ArrayStore(tmp_path / "tok"), ArrayStore(feats), VQTokenizer(exp / "tokenizer")
    assert tokens.keys() == store.keys() and tokens.meta["n_clusters"] == 16
    for utt in store.keys():
        np.testing.assert_array_equal(tokens[utt], tokenizer.assign(store[utt], utt))
    info = json.loads((tmp_path / "tok" / "tokens.json").read_text())
    assert info["tokenizer"] == "vq" and info["kmeans"] == str((exp / "tokenizer").resolve())
    result = runner.invoke(
        app, ["tokenize", str(tmp_path / "auto"), "--kmeans", str(exp / "tokenizer"), "--feats", str(feats)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "auto" / "tokens.json").read_text())["tokenizer"] == "vq", (
        "--kmeans is an alias of --model"
    )


def test_tokenizer_kind_mismatch_is_an_error(trained, tmp_path):
    feats, exp = trained
    result = runner.invoke(
        app,
        [
            "tokenize",
            str(tmp_path / "tok"),
            "--model",
            str(exp / "tokenizer"),
            "--tokenizer",
            "kmeans",
            "--feats",
            str(feats),
        ],
    )
    assert result.exit_code == 1
    assert f"{exp / 'tokenizer'} holds a vq tokenizer (vq.safetensors), not a kmeans one" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output and not (tmp_path / "tok").exists()


def test_dimension_mismatch_names_the_utterance(trained, tmp_path):
    _, exp = trained
    with pytest.raises(
        FeatureDimensionError,
        match=r"utterance 'utt_x': features of shape \(5, 7\) do not match the VQ tokenizer .*12 dims",
    ):
        VQTokenizer(exp / "tokenizer").assign(np.zeros((5, 7), dtype=np.float32), "utt_x")
    other = write_features(tmp_path / "feats7", dim=7, n_utts=2)
    with pytest.raises(FeatureDimensionError, match="utterance 'utt00'"):
        tokenize(tmp_path / "tok", exp / "tokenizer", feats_dir=other)


def test_train_vq_refuses_features_of_another_dimension(tmp_path):
    feats = write_features(tmp_path / "feats", n_utts=2)
    result = runner.invoke(
        app,
        [
            "train-vq",
            str(feats),
            str(tmp_path / "exp"),
            "model.input_dim=1024",
            "--config",
            str(REPO / "conf/mini/vq.yaml"),
        ],
    )
    assert result.exit_code == 1
    assert "model.input_dim is 1024 but the features in" in result.output and "have 12 dims" in result.output


def test_load_tokenizer_by_contents(trained, tmp_path):
    _, exp = trained
    with pytest.raises(
        MetisError, match=rf"{tmp_path}: not a tokenizer dir: it holds neither kmeans.safetensors .* nor vq.safetensors"
    ):
        load_tokenizer(tmp_path)
    assert isinstance(load_tokenizer(exp / "tokenizer"), VQTokenizer)
    from safetensors.numpy import save_file

    (tmp_path / "km").mkdir()
    save_file({"centroids": np.eye(4, DIM, dtype=np.float32)}, str(tmp_path / "km" / "kmeans.safetensors"))
    assert isinstance(load_tokenizer(tmp_path / "km", "kmeans"), KMeansModel)
    with pytest.raises(MetisError, match="holds a kmeans tokenizer"):
        load_tokenizer(tmp_path / "km", "vq")


def test_fine_tuned_experiments_copy_a_vq_tokenizer(trained, tmp_path):
    from metis_cli.tasks.conditions import FrameConditioner

    feats, exp = trained
    front_end = {
        "extractor": "builtin",
        "layer": None,
        "stats": str(feats / "stats.safetensors"),
        "frame_rate": 50,
        "dim": DIM,
        "kmeans": str(exp / "tokenizer"),
    }
    conditioner = FrameConditioner.for_experiment(front_end, tmp_path / "ft")
    assert sorted(p.name for p in (tmp_path / "ft" / "vq").iterdir()) == ["vq.json", "vq.safetensors"]
    assert conditioner.front_end["kmeans"] == str((tmp_path / "ft" / "vq").resolve())
    x = np.asarray(ArrayStore(feats)["utt00"], dtype=np.float32)
    np.testing.assert_array_equal(conditioner.tokens(x, "utt00"), VQTokenizer(exp / "tokenizer").assign(x))
