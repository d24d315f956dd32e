"""The masked generative core: transformer, stage-1 and S2A models, the masking objective, mask-predict."""

import math

import pytest
import torch
from conftest import REPO

from metis_cli.config import load_config
from metis_cli.errors import MetisError
from metis_cli.infer.generate import generate_codes, generate_ssl_tokens, per_codebook_settings
from metis_cli.infer.mask_predict import MaskPredictSettings, guided_hidden, mask_predict
from metis_cli.models.masking import MaskingConfig, mask_ratio, sample_masks
from metis_cli.models.s2a import S2AConfig, S2AModel
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.models.transformer import count_parameters

TINY = {"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64}


def stage1(**kw):
    torch.manual_seed(0)
    return Stage1Model(Stage1Config.from_dict({"vocab_size": 20, "transformer": TINY, **kw})).eval()


def s2a(**kw):
    torch.manual_seed(0)
    return S2AModel(
        S2AConfig.from_dict(
            {
                "ssl_vocab_size": 20,
                "n_codebooks": 3,
                "codebook_size": 16,
                "predict_codebooks": [0, 3],
                "transformer": TINY,
                **kw,
            }
        )
    ).eval()


def test_full_size_parameter_counts_match_the_reference():
    with torch.device("meta"):
        pre = load_config(REPO / "conf" / "full" / "pretrain.yaml")["model"]
        n_stage1 = count_parameters(Stage1Model(Stage1Config.from_dict(pre)))
        n_coarse = count_parameters(
            S2AModel(S2AConfig.from_dict(load_config(REPO / "conf" / "full" / "s2a_coarse.yaml")["model"]))
        )
        n_fine = count_parameters(
            S2AModel(S2AConfig.from_dict(load_config(REPO / "conf" / "full" / "s2a_fine.yaml")["model"]))
        )
        n_all = count_parameters(
            S2AModel(
                S2AConfig.from_dict(
                    {**load_config(REPO / "conf" / "full" / "s2a_fine.yaml")["model"], "predict_codebooks": [0, 12]}
                )
            )
        )
    print(
        f"stage 1 {n_stage1 / 1e6:.2f}M, S2A coarse {n_coarse / 1e6:.2f}M, fine {n_fine / 1e6:.2f}M, all codebooks "
        f"{n_all / 1e6:.2f}M"
    )
    assert abs(n_stage1 - 725.9e6) / 725.9e6 < 0.01
    assert abs(n_all - 353.4e6) / 353.4e6 < 0.01
    assert abs(n_fine - 353.4e6) / 353.4e6 < 0.01
    assert n_coarse == n_all - 11 * (1024 * 1024 + 1024)  # the same network with one head


def test_mask_schedule_is_sine_with_a_floor():
    t = torch.tensor([0.0, 0.5, 1.0])
    assert mask_ratio(t).tolist() == pytest.approx([0.0, math.sin(math.pi / 4), 1.0])
    assert mask_ratio(t, floor=0.2).tolist() == pytest.approx([0.2, math.sin(math.pi / 4), 1.0])


def test_prompt_and_mask_statistics():
    lengths = torch.full((4000,), 100)
    t, prompts, masked = sample_masks(lengths, MaskingConfig(0.85, 0.4, 0.2), torch.Generator().manual_seed(0))
    with_prompt = prompts > 0
    assert with_prompt.float().mean().item() == pytest.approx(0.85, abs=0.02)
    assert prompts[with_prompt].min() >= 5 and prompts.max() <= 40
    assert prompts[with_prompt].float().mean().item() == pytest.approx(22.5, abs=0.7)  # uniform on [5, 40]
    positions = torch.arange(100)[None]
    assert not (masked & (positions < prompts[:, None])).any()  # the prompt is never masked
    assert masked.any(1).all()  # at least one masked token each
    ratio = masked.sum(1) / (100 - prompts)
    expected = mask_ratio(t, 0.2)
    assert (ratio - expected).mean().abs() < 0.01
    assert t.min() >= 1e-5 and t.max() <= 1


def test_masks_respect_padding():
    lengths = torch.tensor([3, 10, 1])
    _, prompts, masked = sample_masks(lengths, MaskingConfig(), torch.Generator().manual_seed(1))
    assert masked.shape == (3, 10)
    assert not masked[0, 3:].any() and not masked[2, 1:].any()
    assert masked[2, 0]  # a one-frame utterance: its frame is the target


def test_padding_is_irrelevant_at_the_end_and_between_prefix_and_tokens():
    model = stage1(n_phones=10)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 20, (1, 7), generator=g)
    masked = torch.tensor([[False, True, True, False, True, False, True]])
    phones = torch.tensor([[1, 2, 3]])
    t = torch.tensor([0.6])
    with torch.no_grad():
        ref = model(
            tokens,
            masked,
            torch.ones(1, 7, dtype=torch.bool),
            t,
            phones=phones,
            phone_valid=torch.ones(1, 3, dtype=torch.bool),
        )
        padded_tokens = torch.cat([tokens, torch.zeros(1, 5, dtype=torch.long)], 1)
        padded_masked = torch.cat([masked, torch.ones(1, 5, dtype=torch.bool)], 1)
        valid = torch.arange(12)[None] < 7
        padded_phones = torch.tensor([[1, 2, 3, 0, 0]])
        phone_valid = torch.tensor([[True, True, True, False, False]])
        out = model(padded_tokens, padded_masked, valid, t, phones=padded_phones, phone_valid=phone_valid)
    assert torch.allclose(out[:, :7], ref, atol=1e-5)


def test_frame_adapter_starts_at_zero_and_conditions_are_checked():
    plain, adapted = stage1(), stage1(frame_condition_dim=5)
    adapted.load_state_dict(plain.state_dict(), strict=False)
    tokens = torch.randint(0, 20, (2, 6))
    masked = torch.rand(2, 6) < 0.5
    valid = torch.ones(2, 6, dtype=torch.bool)
    t = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        assert torch.equal(
            plain(tokens, masked, valid, t), adapted(tokens, masked, valid, t, frame_condition=torch.randn(2, 6, 5))
        )
    with pytest.raises(MetisError, match="no frame adapter"):
        plain(tokens, masked, valid, t, frame_condition=torch.randn(2, 6, 5))
    with pytest.raises(MetisError, match="no text prefix"):
        plain(tokens, masked, valid, t, phones=tokens, phone_valid=valid)


@pytest.mark.parametrize("gated", [True, False])
def test_both_frame_adapters_start_at_zero_and_only_the_ungated_one_passes_gradients_back(gated):
    """A zero gate gives the layers before it no gradient (a visual front end trained from scratch would
    never learn: the L2S failure this guards against); a zero output layer does."""
    model = stage1(frame_condition_dim=5, adapter_gate=gated)
    assert ("frame_adapter.gate_scale" in model.state_dict()) == gated
    tokens, masked = torch.randint(0, 20, (2, 6)), torch.ones(2, 6, dtype=torch.bool)
    condition = torch.randn(2, 6, 5, requires_grad=True)
    out = model(tokens, masked, torch.ones(2, 6, dtype=torch.bool), torch.tensor([0.3, 0.9]), frame_condition=condition)
    with torch.no_grad():
        assert torch.equal(out, model(tokens, masked, torch.ones(2, 6, dtype=torch.bool), torch.tensor([0.3, 0.9])))
    out.logsumexp(-1).sum().backward()
    adapter = model.frame_adapter
    assert (
        float(adapter.out_linear.weight.grad.abs().sum()) == 0.0
        if gated
        else float(adapter.out_linear.weight.grad.abs().sum()) > 0
    )
    if gated:
        assert float(adapter.gate_scale.grad.abs()) > 0 and float(condition.grad.abs().sum()) == 0.0
    else:
        adapter.out_linear.weight.data.normal_()  # after one update the gradient reaches the input
        out = model(
            tokens, masked, torch.ones(2, 6, dtype=torch.bool), torch.tensor([0.3, 0.9]), frame_condition=condition
        )
        out.logsumexp(-1).sum().backward()
        assert float(condition.grad.abs().sum()) > 0


def test_s2a_hides_upper_codebooks_outside_the_prompt():
    model = s2a()
    codes = torch.randint(0, 16, (1, 8, 3))
    ssl = torch.randint(0, 20, (1, 8))
    masked = torch.zeros(1, 8, dtype=torch.bool)
    masked[0, 4:] = True
    prompt = torch.arange(8)[None] < 3
    valid = torch.ones(1, 8, dtype=torch.bool)
    t = torch.tensor([0.5])
    changed = codes.clone()
    changed[0, 3:, 2] = (
        changed[0, 3:, 2] + 1
    ) % 16  # codebook 2 after the prompt: invisible when predicting codebook 1
    changed[0, 4:, 1] = (changed[0, 4:, 1] + 1) % 16  # masked values of codebook 1: invisible
    with torch.no_grad():
        assert torch.allclose(
            model(codes, 1, masked, valid, t, ssl, prompt), model(changed, 1, masked, valid, t, ssl, prompt)
        )
        changed[0, 0, 2] = (changed[0, 0, 2] + 1) % 16  # codebook 2 inside the prompt: visible
        assert not torch.allclose(
            model(codes, 1, masked, valid, t, ssl, prompt), model(changed, 1, masked, valid, t, ssl, prompt)
        )
    with pytest.raises(MetisError, match="not codebook 0"):
        s2a(predict_codebooks=[1, 3])(codes, 0, masked, valid, t, ssl, prompt)


def test_bad_configs_are_refused():
    with pytest.raises(MetisError, match="unknown key"):
        Stage1Config.from_dict({"vocab": 3})
    with pytest.raises(MetisError, match="heads"):
        Stage1Config.from_dict({"transformer": {"dim": 30, "n_heads": 4}})
    with pytest.raises(MetisError, match="predict_codebooks"):
        S2AConfig.from_dict({"n_codebooks": 3, "predict_codebooks": [2, 5]})
    with pytest.raises(MetisError, match="dropout 1.0"):
        S2AConfig.from_dict({"transformer": {"dropout": 1.0}})
    with pytest.raises(MetisError, match="condition_context -1"):
        S2AConfig.from_dict({"condition_context": -1})


def test_token_context_reads_only_its_neighbours_and_never_the_padding():
    from metis_cli.models.s2a import TokenContext

    model = s2a(condition_context=2)
    assert model.ssl_context is not None and s2a().ssl_context is None
    emb, valid = torch.randn(1, 9, 32), torch.ones(1, 9, dtype=torch.bool)
    assert torch.equal(model.ssl_context(emb, valid), emb)  # it starts as no context at all
    torch.manual_seed(1)
    context = TokenContext(32, 2)
    torch.nn.init.normal_(context.conv.weight, std=0.1)
    out = context(emb, valid)
    moved = emb.clone()
    moved[0, 0] += 1.0  # frame 0 is within reach of frames 0..2 only
    changed = (context(moved, valid) - out).abs().amax(-1)[0] > 0
    assert changed.tolist() == [True, True, True] + [False] * 6
    padded = torch.cat([emb, torch.randn(1, 3, 32)], 1)
    valid_padded = torch.cat([valid, torch.zeros(1, 3, dtype=torch.bool)], 1)
    assert torch.allclose(context(padded, valid_padded)[:, :9], out, atol=1e-6)


def test_dropout_acts_in_training_only_and_adds_no_weights():
    plain, dropped = s2a(), s2a(transformer={**TINY, "dropout": 0.3})
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # checkpoints load either way
    codes = torch.randint(0, 16, (2, 6, 3), generator=torch.Generator().manual_seed(1))
    masked, valid = (
        torch.rand(2, 6, generator=torch.Generator().manual_seed(2)) < 0.5,
        torch.ones(2, 6, dtype=torch.bool),
    )
    ssl, prompt, t = torch.randint(0, 20, (2, 6)), torch.zeros(2, 6, dtype=torch.bool), torch.tensor([0.5, 0.8])
    with torch.no_grad():
        ref = plain(codes, 1, masked, valid, t, ssl, prompt)
        assert torch.equal(dropped(codes, 1, masked, valid, t, ssl, prompt), ref)  # eval: no dropout
        dropped.train()
        assert not torch.allclose(dropped(codes, 1, masked, valid, t, ssl, prompt), ref)


def _stage1_batch(model):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 20, (3, 9), generator=g)
    valid = torch.arange(9)[None] < torch.tensor([[9], [6], [4]])
    target = valid & (torch.arange(9)[None] >= torch.tensor([[3], [2], [0]]))

    def hidden_fn(tok, masked, val, t, rows, unconditional):
        return model.hidden(tok, masked, val, t)

    return tokens, valid, target, hidden_fn


def test_batched_cfg_equals_two_passes():
    model = stage1()
    tokens, valid, target, hidden_fn = _stage1_batch(model)
    settings = MaskPredictSettings(steps=4, cfg_scale=2.5)
    t = torch.full((3,), 0.7)
    with torch.no_grad():
        one = guided_hidden(hidden_fn, tokens, target, valid, target, t, settings, batched_cfg=True)
        two = guided_hidden(hidden_fn, tokens, target, valid, target, t, settings, batched_cfg=False)
    assert torch.allclose(one[valid], two[valid], atol=1e-5)
    a = mask_predict(
        hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0), batched_cfg=True
    )
    b = mask_predict(
        hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0), batched_cfg=False
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize("steps", [1, 6])
def test_mask_predict_fills_only_targets_and_is_deterministic(steps):
    model = stage1()
    tokens, valid, target, hidden_fn = _stage1_batch(model)
    sentinel = tokens.clone()
    sentinel[target] = -1
    settings = MaskPredictSettings(steps=steps, cfg_scale=1.0, temperature=1.0, top_k_ratio=0.5)
    out = mask_predict(hidden_fn, model.logits, sentinel, target, valid, settings, torch.Generator().manual_seed(0))
    assert torch.equal(out[~target], sentinel[~target])  # prompts and padding untouched
    assert ((out[target] >= 0) & (out[target] < 20)).all()
    again = mask_predict(hidden_fn, model.logits, sentinel, target, valid, settings, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(MetisError, match="at least 1 step"):
        MaskPredictSettings(steps=0)


def test_mask_predict_keeps_each_positions_distribution_from_the_step_that_fixed_it():
    model = stage1()
    tokens, valid, target, hidden_fn = _stage1_batch(model)
    settings = MaskPredictSettings(steps=1, cfg_scale=0.0, top_k_ratio=0.5)
    out, probs = mask_predict(
        hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0), return_probs=True
    )
    assert torch.equal(
        out, mask_predict(hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0))
    )
    assert probs.shape == (3, 9, 20)
    assert torch.allclose(probs[target].sum(-1), torch.ones(int(target.sum())))
    assert (probs[~target] == 0).all()
    # one step: every position is fixed at step 0 from the whole vocabulary's softmax; the token is one of its top half
    with torch.no_grad():
        expected = model.logits(model.hidden(tokens, target, valid, torch.ones(3))[target]).softmax(-1)
    assert torch.allclose(probs[target], expected, atol=1e-6)
    assert (probs[target].gather(-1, out[target][:, None]) >= probs[target].topk(10, -1).values[:, -1:]).all()
    settings = MaskPredictSettings(steps=5, temperature=1.0, top_k_ratio=0.5)
    several, probs = mask_predict(
        hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0), return_probs=True
    )
    assert torch.allclose(probs[target].sum(-1), torch.ones(int(target.sum())))
    assert torch.equal(
        several,
        mask_predict(hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0)),
    )


def test_s2a_distributions_are_one_hot_for_oracle_codebooks():
    model, settings = s2a(), per_codebook_settings(3, {"steps": [2, 1]})
    g = torch.Generator().manual_seed(4)
    ssl, truth = [torch.randint(0, 20, (5,), generator=g)], [torch.randint(0, 16, (5, 3), generator=g)]
    codes, probs = generate_codes(
        [model],
        ssl,
        [torch.zeros(0, dtype=torch.long)],
        [torch.zeros(0, 3, dtype=torch.long)],
        settings,
        torch.Generator().manual_seed(0),
        oracle_codes=[truth[0][:, :1]],
        return_probs=True,
    )
    assert probs[0].shape == (5, 3, 16) and torch.allclose(probs[0].sum(-1), torch.ones(5, 3))
    assert torch.equal(probs[0][:, 0], torch.nn.functional.one_hot(truth[0][:, 0], 16).float())
    assert torch.equal(
        codes[0],
        generate_codes(
            [model],
            ssl,
            [torch.zeros(0, dtype=torch.long)],
            [torch.zeros(0, 3, dtype=torch.long)],
            settings,
            torch.Generator().manual_seed(0),
            oracle_codes=[truth[0][:, :1]],
        )[0],
    )


def test_guidance_rescales_by_one_spread_per_utterance_as_published():
    model = stage1()
    tokens, valid, target, hidden_fn = _stage1_batch(model)
    settings = MaskPredictSettings(cfg_scale=2.5, cfg_rescale=0.75)
    t = torch.full((3,), 0.7)
    with torch.no_grad():
        out = guided_hidden(hidden_fn, tokens, target, valid, target, t, settings)
        rows = torch.arange(3)
        none = torch.zeros(3, dtype=torch.bool)
        g, g_u = (
            hidden_fn(tokens, target, valid, t, rows, none),
            hidden_fn(tokens, target, valid & target, t, rows, ~none),
        )
    for i in range(3):  # the published formula on utterance i's target positions alone (batch 1, no padding there)
        where = target[i]
        g_i, g_cfg = g[i][where], g[i][where] + 2.5 * (g[i][where] - g_u[i][where])
        expected = 0.75 * g_cfg * g_i.std() / g_cfg.std() + 0.25 * g_cfg
        assert torch.allclose(out[i][where], expected, atol=1e-5)


def test_one_step_decoding_samples_at_temperature_0_2_as_published(monkeypatch):
    import metis_cli.infer.mask_predict as mp

    model = stage1()
    tokens, valid, target, hidden_fn = _stage1_batch(model)
    settings = MaskPredictSettings(steps=1, top_k_ratio=1.0)
    with torch.no_grad():
        greedy = model.logits(model.hidden(tokens, target, valid, torch.ones(3))).argmax(-1)
    draws = [
        mask_predict(hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(s))[target]
        for s in range(8)
    ]
    assert torch.equal(
        draws[0],
        mask_predict(hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0))[
            target
        ],
    )
    assert any(not torch.equal(d, greedy[target]) for d in draws)  # sampled, not the argmax
    monkeypatch.setattr(mp, "ONE_STEP_TEMPERATURE", 1e-6)  # temperature -> 0: the argmax
    assert torch.equal(
        mask_predict(hidden_fn, model.logits, tokens, target, valid, settings, torch.Generator().manual_seed(0))[
            target
        ],
        greedy[target],
    )


def test_batch_decoding_equals_one_by_one(monkeypatch):
    import metis_cli.infer.mask_predict as mp

    monkeypatch.setattr(mp, "ONE_STEP_TEMPERATURE", 1e-6)  # one step at temperature -> 0: the argmax, no noise
    model = stage1()
    prompts = [torch.tensor([1, 2, 3]), torch.tensor([], dtype=torch.long), torch.tensor([4])]
    lengths = [5, 7, 2]
    settings = MaskPredictSettings(steps=1, cfg_scale=2.0)  # guided: the spread is each utterance's own
    together = generate_ssl_tokens(model, prompts, lengths, settings)
    alone = [generate_ssl_tokens(model, [p], [n], settings)[0] for p, n in zip(prompts, lengths, strict=True)]
    assert [len(x) for x in together] == lengths
    for a, b in zip(together, alone, strict=True):
        assert torch.equal(a, b)


def test_s2a_generation_shapes_and_codebook_settings():
    model = s2a()
    settings = per_codebook_settings(3, {"steps": [3, 2]})
    assert [s.steps for s in settings] == [3, 2, 2]
    assert [s.cfg_scale for s in settings] == [0.0, 2.5, 2.5]
    codes = generate_codes(
        [model],
        [torch.randint(0, 20, (6,)), torch.randint(0, 20, (3,))],
        [torch.randint(0, 20, (4,)), torch.zeros(0, dtype=torch.long)],
        [torch.randint(0, 16, (4, 3)), torch.zeros(0, 3, dtype=torch.long)],
        settings,
        torch.Generator().manual_seed(0),
    )
    assert [tuple(c.shape) for c in codes] == [(6, 3), (3, 3)]
    assert all(((c >= 0) & (c < 16)).all() for c in codes)
    with pytest.raises(MetisError, match="prompt of 4 SSL tokens"):
        generate_codes(
            [model],
            [torch.zeros(2, dtype=torch.long)],
            [torch.zeros(4, dtype=torch.long)],
            [torch.zeros(3, 3, dtype=torch.long)],
            settings,
        )
    with pytest.raises(MetisError, match="unknown key"):
        per_codebook_settings(3, {"step": 3})


def test_oracle_codebooks_are_kept_and_the_rest_generated():
    model, settings = s2a(), per_codebook_settings(3, {"steps": [2, 1]})
    g = torch.Generator().manual_seed(4)
    ssl, truth = (
        [torch.randint(0, 20, (5,), generator=g), torch.randint(0, 20, (3,), generator=g)],
        [torch.randint(0, 16, (5, 3), generator=g), torch.randint(0, 16, (3, 3), generator=g)],
    )
    prompts = ([torch.randint(0, 20, (2,), generator=g)] * 2, [torch.randint(0, 16, (2, 3), generator=g)] * 2)

    def run(k):
        return generate_codes(
            [model], ssl, *prompts, settings, torch.Generator().manual_seed(0), oracle_codes=[c[:, :k] for c in truth]
        )

    # every codebook given: the codes themselves
    assert all(torch.equal(c, t) for c, t in zip(run(3), truth, strict=True))
    one = run(1)
    assert all(torch.equal(c[:, 0], t[:, 0]) and ((c >= 0) & (c < 16)).all() for c, t in zip(one, truth, strict=True))
    assert any(not torch.equal(c[:, 1:], t[:, 1:]) for c, t in zip(one, truth, strict=True))
    with pytest.raises(MetisError, match=r"utterance 1: oracle codes of shape \(3, 2\)"):
        generate_codes([model], ssl, *prompts, settings, oracle_codes=[truth[0][:, :1], truth[1][:, :2]])


def test_lora_and_adapter_trainable_counts_match_the_published_ones():
    from metis_cli.models.lora import add_lora, lora_parameters

    pre = load_config(REPO / "conf" / "full" / "pretrain.yaml")["model"]
    with torch.device("meta"):
        model = Stage1Model(Stage1Config.from_dict(pre))
        assert add_lora(model, rank=32) == 16 * 7
        counts = {32: sum(p.numel() for p in lora_parameters(model))}
        for rank in (4, 16):
            m = Stage1Model(Stage1Config.from_dict(pre))
            add_lora(m, rank=rank)
            counts[rank] = sum(p.numel() for p in lora_parameters(m))
        adapted = Stage1Model(Stage1Config.from_dict({**pre, "frame_condition_dim": 1024}))
        adapter = count_parameters(adapted.frame_adapter)
    print(f"LoRA trainable: {counts}; adapter {adapter}")
    assert counts == {32: 18_087_936, 4: 2_260_992, 16: 9_043_968}
    assert adapter == 15_736_321


def test_lora_starts_as_the_base_model_and_merges_exactly():
    from metis_cli.models.lora import LoRALinear, add_lora, merge_lora

    model = stage1()
    tokens = torch.randint(0, 20, (2, 6))
    masked = torch.rand(2, 6) < 0.5
    valid = torch.ones(2, 6, dtype=torch.bool)
    t = torch.tensor([0.4, 0.8])
    with torch.no_grad():
        before = model(tokens, masked, valid, t)
        add_lora(model, rank=4, dropout=0.0)
        assert torch.equal(model(tokens, masked, valid, t), before)  # B = 0: nothing changed yet
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_()
        changed = model(tokens, masked, valid, t)
        assert not torch.allclose(changed, before)
        assert merge_lora(model) == 2 * 7
        assert not any(isinstance(m, LoRALinear) for m in model.modules())
        assert torch.allclose(model(tokens, masked, valid, t), changed, atol=1e-4)


def test_int8_weights_quantise_the_transformer_only_and_keep_its_outputs():
    from metis_cli.infer.options import DecodeOptions

    model, reference = stage1(), stage1()
    tokens, valid, target, _ = _stage1_batch(model)
    t = torch.full((3,), 0.7)
    options = DecodeOptions(device="cpu", int8=True).placed()
    assert (options.bf16, options.dtype) == (False, torch.float32)
    quantised = options.prepare(model)
    int8_linear = torch.ao.nn.quantized.dynamic.Linear
    linear = [m for m in quantised.transformer.modules() if isinstance(m, (torch.nn.Linear, int8_linear))]
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in reference.transformer.modules())
    assert len(linear) == n_linear > 0 and all(isinstance(m, int8_linear) for m in linear)
    assert type(quantised.head) is torch.nn.Linear  # heads and embeddings stay float32
    with torch.no_grad():
        a, b = reference(tokens, target, valid, t)[valid], quantised(tokens, target, valid, t)[valid]
    assert a.dtype == b.dtype == torch.float32
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
