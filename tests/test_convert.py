"""metis convert: published (Amphion) layouts -> this toolkit's models, at small widths."""

import math

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from metis_cli.convert.amphion import convert_s2a, load_converted, merge_lora
from metis_cli.convert.convert import convert_amphion
from metis_cli.convert.layouts import detect_layout
from metis_cli.convert.synthetic import (
    TINY,
    codec_decoder_state,
    codec_encoder_state,
    lora_state,
    s2a_state,
    stage1_state,
    write_published,
)
from metis_cli.errors import MetisError
from metis_cli.models.s2a import S2AConfig, S2AModel
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.models.transformer import timestep_embedding

MODEL_PARTS = [
    "semantic_codec",
    "acoustic_codec",
    "s2a_model",
    "metis_base",
    "t2s",
    "metis_vc",
    "metis_l2s",
    "metis_omni",
    "metis_se",
    "metis_tse",
    "ckpt",
    "g2p",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    src = write_published(root / "amphion", TINY, parts=MODEL_PARTS)
    written = convert_amphion(src, root / "exp", n_heads=2, lora_rank=8)
    return root / "exp", written


def test_every_published_file_is_recognised():
    layouts = {
        "stage1": stage1_state(TINY),
        "s2a": s2a_state(TINY, 1),
        "acoustic_encoder": codec_encoder_state(TINY),
        "acoustic_decoder": codec_decoder_state(TINY),
        "lora": lora_state(TINY, 4),
    }
    for name, state in layouts.items():
        assert detect_layout(state, name).name == name
    assert detect_layout(stage1_state(TINY, text=True, adapter="gated"), "omni").name == "stage1"


def test_unknown_layout_names_nearest_with_missing_and_unexpected_keys():
    state = s2a_state(TINY, 1)
    del state["layer_emb.weight"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(MetisError) as err:
        detect_layout(state, "odd.safetensors")
    text = str(err.value)
    assert "odd.safetensors" in text and "nearest: s2a" in text
    assert "missing (1): layer_emb.weight" in text and "unexpected (1): extra.weight" in text


def test_amphion_time_embedding_formula():
    t = torch.tensor([0.5])
    emb = timestep_embedding(t, 8)
    freqs = [math.exp(-math.log(10000) * i / 3) for i in range(4)]
    expected = [math.sin(0.5 * f) for f in freqs] + [math.cos(0.5 * f) for f in freqs]
    assert torch.allclose(emb[0], torch.tensor(expected), atol=1e-6)


def test_conversion_writes_every_model(converted):
    exp, written = converted
    assert set(written) == {
        "ssl_stats.safetensors",
        "semantic_tokenizer",
        "codec",
        "s2a_coarse",
        "s2a_fine",
        "pretrain",
        "tts",
        "vc",
        "l2s",
        "omni",
        "se",
        "tse",
    }
    assert not any(p.name.startswith(".") for p in exp.parent.iterdir())  # no staging folder left
    vc = yaml.safe_load((exp / "vc" / "config.yaml").read_text())
    assert (
        vc["task"] == "vc"
        and vc["model"]["frame_condition_dim"] == TINY.ssl_dim
        and vc["model"]["adapter_gate"] is True
    )
    assert vc["model"]["transformer"] == {
        "dim": 32,
        "n_layers": 2,
        "n_heads": 2,
        "ffn_dim": 128,
    }
    assert vc["ssl"]["layer"] == 17 and vc["ssl"]["stats"] == str(exp / "ssl_stats.safetensors")
    l2s = yaml.safe_load((exp / "l2s" / "config.yaml").read_text())
    assert l2s["model"]["adapter_gate"] is False and l2s["model"]["frame_condition_dim"] == TINY.l2s_dim
    omni = yaml.safe_load((exp / "omni" / "config.yaml").read_text())
    assert omni["task"] == "omni" and omni["model"]["n_phones"] == 33 and omni["text"]["kind"] == "espeak"
    fine = yaml.safe_load((exp / "s2a_fine" / "config.yaml").read_text())["model"]
    assert fine["predict_codebooks"] == [1, 4] and fine["mask_higher_codebooks"] is True
    coarse = yaml.safe_load((exp / "s2a_coarse" / "config.yaml").read_text())["model"]
    assert (
        coarse["predict_codebooks"] == [0, 1]
        and coarse["n_codebooks"] == 4
        and coarse["mask_higher_codebooks"] is False
    )


def test_stage1_weights_are_the_published_ones(converted, tmp_path):
    exp, _ = converted
    src = load_file(str(next((exp.parent / "amphion" / "metis_vc").glob("*.safetensors"))))
    ours = load_file(str(exp / "vc" / "checkpoints" / "step_00000000" / "stage1.safetensors"))
    assert torch.equal(ours["token_emb.weight"], src["cond_emb.weight"])
    assert torch.equal(
        ours["transformer.layers.1.mlp.down_proj.weight"], src["diff_estimator.layers.1.mlp.down_proj.weight"]
    )
    assert torch.equal(ours["transformer.time_mlp.2.bias"], src["diff_estimator.diff_step_mlp.2.bias"])
    assert torch.equal(ours["frame_adapter.gate_scale"], src["cond_adapter.gate_scale"])


def test_phone_table_follows_the_g2p_ids(converted):
    exp, _ = converted
    src = load_file(str(exp.parent / "amphion" / "t2s" / "model.safetensors"))
    ours = load_file(str(exp / "tts" / "checkpoints" / "step_00000000" / "stage1.safetensors"))
    symbols = (exp / "tts" / "phones.txt").read_text(encoding="utf-8").splitlines()
    assert symbols[0] == "<pad>" and symbols[1] == "_" and symbols.index("oʊ") == 7
    assert torch.equal(ours["phone_emb.weight"][0], src["phone_emb.weight"][1023])  # padding row
    assert torch.equal(ours["phone_emb.weight"][7], src["phone_emb.weight"][6])  # "oʊ" has id 6 in vocab.json
    assert torch.equal(ours["prefix_mlp.0.weight"], src["diff_estimator.cond_mlp.0.weight"])


def test_lora_is_merged_with_alpha_over_r(converted):
    exp, _ = converted
    root = exp.parent / "amphion"
    base = load_file(str(root / "metis_base" / "model.safetensors"))
    lora = load_file(str(root / "metis_se" / "metis_se_lora_8.safetensors"))
    ours = load_file(str(exp / "se" / "checkpoints" / "step_00000000" / "stage1.safetensors"))
    key = "diff_estimator.layers.0.self_attn.q_proj"
    a, b = lora[f"model.{key}.lora_A.default.weight"], lora[f"model.{key}.lora_B.default.weight"]
    expected = base[f"{key}.weight"] + (16 / 8) * b @ a
    assert torch.allclose(ours["transformer.layers.0.self_attn.q_proj.weight"], expected, atol=1e-6)
    adapter = load_file(str(root / "metis_se" / "metis_se_lora_8_adapter.safetensors"))
    assert torch.equal(ours["frame_adapter.in_linear.weight"], adapter["model.cond_adapter.in_linear.weight"])


def test_semantic_codec_becomes_the_vq_tokenizer(converted):
    from metis_cli.tokenizer import load_tokenizer

    exp, _ = converted
    src = load_file(str(exp.parent / "amphion" / "semantic_codec" / "model.safetensors"))
    tokenizer = load_tokenizer(exp / "semantic_tokenizer", "vq")
    assert tokenizer.n_clusters == TINY.semantic_codebook and tokenizer.config["ssl"]["layer"] == 17
    model = tokenizer.model
    assert torch.equal(model.encoder.backbone.blocks[1].pwconv2.weight, src["encoder.0.convnext.1.pwconv2.weight"])
    assert torch.equal(model.decoder.proj.bias, src["decoder.1.bias"])
    assert torch.equal(model.quantizer.codebook.weight, src["quantizer.quantizers.0.codebook.weight"])
    feats = np.random.default_rng(0).standard_normal((30, TINY.ssl_dim)).astype(np.float32)
    tokens = tokenizer.assign(feats)
    assert tokens.shape == (30,) and 0 <= tokens.min() and tokens.max() < TINY.semantic_codebook


def test_lora_rank_mismatch_is_an_error():
    state = {k: v for k, v in stage1_state(TINY).items()}
    with pytest.raises(MetisError, match="LoRA rank 4, but the model's config says rank 8"):
        merge_lora(state, lora_state(TINY, 4), rank=8, where="metis_se_lora.safetensors")


def test_weight_norm_and_codec_decode(converted):
    from metis_cli.codec.inference import load_codec

    exp, _ = converted
    enc = load_file(str(exp.parent / "amphion" / "acoustic_codec" / "model.safetensors"))
    codec = load_codec(exp / "codec")
    g, v = enc["block.0.weight_g"], enc["block.0.weight_v"]
    expected = g * v / v.flatten(1).norm(dim=1)[:, None, None]
    assert torch.allclose(codec.encoder.net[0].weight, expected, atol=1e-6)
    assert codec.cfg.hop_length == 4 and codec.cfg.decoder.n_fft == TINY.n_fft
    codes = codec.encode(torch.randn(1, 4 * 10) * 0.1)
    assert codes.shape == (1, 10, TINY.n_codebooks) and int(codes.max()) < TINY.codebook_size
    assert codec.decode(codes).shape == (1, 40)


def test_converted_models_run_one_decode_step(converted):
    from metis_cli.infer.generate import load_s2a
    from metis_cli.infer.task_decode import load_task_stage1

    exp, _ = converted
    for task in ("pretrain", "vc", "omni", "l2s"):
        config = yaml.safe_load((exp / task / "config.yaml").read_text())
        model = load_task_stage1(exp / task, {"task": task, **config}) if task != "pretrain" else None
        if model is None:
            model = Stage1Model(Stage1Config.from_dict(config["model"]))
        tokens = torch.randint(0, TINY.ssl_vocab, (1, 12))
        masked = torch.zeros(1, 12, dtype=torch.bool)
        masked[:, 6:] = True
        kwargs = {}
        if model.cfg.frame_condition_dim:
            kwargs["frame_condition"] = torch.randn(1, 12, model.cfg.frame_condition_dim)
        if model.cfg.n_phones:
            kwargs.update(
                phones=torch.randint(1, model.cfg.n_phones, (1, 5)), phone_valid=torch.ones(1, 5, dtype=torch.bool)
            )
        logits = model(tokens, masked, torch.ones(1, 12, dtype=torch.bool), torch.tensor([0.5]), **kwargs)
        assert logits.shape == (1, 12, TINY.ssl_vocab) and torch.isfinite(logits).all()
    coarse, fine = load_s2a([exp / "s2a_fine", exp / "s2a_coarse"])
    codes = torch.randint(0, TINY.codebook_size, (1, 10, TINY.n_codebooks))
    prompt = torch.zeros(1, 10, dtype=torch.bool)
    prompt[:, :4] = True
    masked = ~prompt
    args = (torch.ones(1, 10, dtype=torch.bool), torch.tensor([0.7]), torch.randint(0, TINY.ssl_vocab, (1, 10)), prompt)
    assert coarse(codes, 0, masked, *args).shape == (1, 10, TINY.codebook_size)
    assert fine(codes, 3, masked, *args).shape == (1, 10, TINY.codebook_size)


def test_codebook0_model_ignores_higher_codebooks_like_the_published_one():
    config, state = convert_s2a(s2a_state(TINY, 1), n_heads=2, n_codebooks=TINY.n_codebooks)
    model = load_converted(S2AModel(S2AConfig.from_dict(config)), state, "s2a_1layer").eval()
    codes = torch.randint(0, TINY.codebook_size, (1, 8, TINY.n_codebooks))
    other = codes.clone()
    other[..., 1:] = torch.randint(0, TINY.codebook_size, (1, 8, TINY.n_codebooks - 1))
    prompt = torch.arange(8)[None] < 3
    args = (
        ~prompt,
        torch.ones(1, 8, dtype=torch.bool),
        torch.tensor([0.4]),
        torch.randint(0, TINY.ssl_vocab, (1, 8)),
        prompt,
    )
    assert torch.equal(model(codes, 0, *args), model(other, 0, *args))


def test_fine_model_adds_one_mask_embedding_per_higher_codebook():
    config, state = convert_s2a(s2a_state(TINY, TINY.n_codebooks), n_heads=2)
    model = load_converted(S2AModel(S2AConfig.from_dict(config)), state, "s2a_full").eval()
    codes = torch.randint(0, TINY.codebook_size, (1, 6, TINY.n_codebooks))
    prompt = torch.zeros(1, 6, dtype=torch.bool)
    masked = torch.ones(1, 6, dtype=torch.bool)
    captured = {}
    model.transformer.register_forward_hook(lambda m, inputs, out: captured.setdefault("x", inputs[0]))
    model(
        codes,
        1,
        masked,
        torch.ones(1, 6, dtype=torch.bool),
        torch.tensor([1.0]),
        torch.zeros(1, 6, dtype=torch.long),
        prompt,
    )
    expected = model.code_emb[0](codes[..., 0]) + (TINY.n_codebooks - 1) * model.mask_emb
    expected = expected + model.cond_mlp(
        model.ssl_emb(torch.zeros(1, 6, dtype=torch.long)) + model.layer_emb(torch.ones(1, 6, dtype=torch.long))
    )
    assert torch.allclose(captured["x"], expected, atol=1e-5)


def test_shape_mismatch_names_the_key_and_writes_nothing(tmp_path):
    src = write_published(tmp_path / "amphion", TINY, parts=["metis_base", "s2a_model"])
    bad = load_file(str(src / "metis_base" / "model.safetensors"))
    bad["to_logit.bias"] = torch.zeros(TINY.ssl_vocab + 1)
    save_file(bad, str(src / "metis_base" / "model.safetensors"))
    with pytest.raises(MetisError, match=r"head\.bias: \(41,\) in the file, \(40,\) in the model"):
        convert_amphion(src, tmp_path / "exp", n_heads=2)
    assert not (tmp_path / "exp").exists() and not (tmp_path / ".exp.converting").exists()


def test_truncated_file_and_missing_base_are_clear_errors(tmp_path):
    src = write_published(tmp_path / "amphion", TINY, parts=["metis_se"])
    with pytest.raises(MetisError, match="needs the base stage-1 model"):
        convert_amphion(src, tmp_path / "exp", n_heads=2)
    path = src / "metis_se" / "metis_se_lora_8.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(MetisError, match="metis_se_lora_8.safetensors: not a readable safetensors file"):
        convert_amphion(src, tmp_path / "exp", n_heads=2)
    assert not (tmp_path / "exp").exists()


def test_cli_convert_refuses_a_non_empty_destination(tmp_path):
    from typer.testing import CliRunner

    from metis_cli.cli import app

    src = write_published(tmp_path / "amphion", TINY, parts=["s2a_model"])
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["convert", str(src), "--to", str(tmp_path / "exp"), "--n-heads", "2"])
    assert result.exit_code != 0 and "exists and is not empty" in result.output
    result = CliRunner().invoke(app, ["convert", str(src), "--to", str(tmp_path / "new"), "--n-heads", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["s2a_coarse", "s2a_fine"]
    assert np.isfinite(
        load_file(str(tmp_path / "new" / "s2a_fine" / "checkpoints" / "step_00000000" / "s2a.safetensors"))[
            "mask_emb"
        ].numpy()
    ).all()
