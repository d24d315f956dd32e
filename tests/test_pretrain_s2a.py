"""Training the stage-1 model and S2A: batches, steps, resume, overfitting, DDP, resynthesis, bad input."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, write_token_datadir
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.config import load_config
from metis_cli.data.batching import DynamicBatches, Piece, UtteranceArrays, unigram_entropy_bits
from metis_cli.errors import DataDirError, MetisError
from metis_cli.infer.mask_predict import MaskPredictSettings
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.task_registry import TASKS
from metis_cli.train.pretrain import pretrain
from metis_cli.train.s2a import train_s2a

runner = CliRunner()
SMALL = [
    "model.transformer.dim=32",
    "model.transformer.n_layers=2",
    "model.transformer.n_heads=2",
    "model.transformer.ffn_dim=64",
    "data.max_frames=400",
    "data.max_utterance_frames=200",
    "train.log_every=1",
    "train.ckpt_every=1",
    "train.val_every=2",
    "optim.warmup_steps=2",
    "train.max_minutes=null",
]


def config(name, *overrides):
    from metis_cli.train.pretrain import PretrainLearner
    from metis_cli.train.s2a import S2ALearner

    resolve = (PretrainLearner if name == "pretrain" else S2ALearner).resolve
    return load_config(REPO / "conf" / "mini" / f"{name}.yaml", SMALL + list(overrides), resolve=resolve)


def losses(exp):
    return [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.fixture(scope="module")
def token_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    return write_token_datadir(root / "train", n_utts=24), write_token_datadir(root / "dev", n_utts=6, seed=1)


@pytest.fixture(scope="module")
def pretrained(token_data, tmp_path_factory):
    exp = tmp_path_factory.mktemp("pre") / "exp"
    result = pretrain(config("pretrain", "train.max_steps=3"), exp, [token_data[0]], [token_data[1]])
    return exp, result


def test_dynamic_batches_fit_the_budget_and_are_reproducible():
    lengths = {f"u{i:02d}": 20 + 7 * i for i in range(30)}
    batches = DynamicBatches(lengths, max_frames=400, max_utterance_frames=150, seed=3)
    seen = []
    for step in range(batches.batches_per_epoch):
        pieces = batches(step)
        assert len(pieces) * max(p.frames for p in pieces) <= 400
        assert all(p.frames <= 150 and 0 <= p.start <= lengths[p.utt] - p.frames for p in pieces)
        seen += [p.utt for p in pieces]
    assert sorted(seen) == sorted(lengths)  # one epoch = every utterance once
    again = DynamicBatches(lengths, max_frames=400, max_utterance_frames=150, seed=3)
    assert again(batches.batches_per_epoch + 2) == batches(batches.batches_per_epoch + 2)
    ranks = [DynamicBatches(lengths, 400, 150, seed=3, world_size=2, rank=r) for r in (0, 1)]
    assert ranks[0](1) == batches(2) and ranks[1](1) == batches(3)  # 2 ranks see 1 rank's batches, shared out
    with pytest.raises(MetisError, match="max_frames"):
        DynamicBatches(lengths, max_frames=100, max_utterance_frames=150)


def test_token_arrays_collate_and_entropy(token_data):
    arrays = UtteranceArrays([token_data[0]], ("ssl_tokens", "acoustic_codes"))
    utts = sorted(arrays.lengths)[:3]
    from metis_cli.data.batching import Piece

    batch = arrays.collate([Piece(u, 0, arrays.lengths[u]) for u in utts])
    t_max = max(arrays.lengths[u] for u in utts)
    assert batch["ssl_tokens"].shape == (3, t_max) and batch["acoustic_codes"].shape == (3, t_max, 3)
    assert batch["valid"].sum().item() == sum(arrays.lengths[u] for u in utts)
    assert 0 < unigram_entropy_bits(arrays, vocab_size=16) <= 4.0  # 16 tokens: at most 4 bits


def test_pretraining_records_steps_checkpoints_and_validation(pretrained):
    exp, result = pretrained
    rows = losses(exp)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in rows)
    resolved = load_config(exp / "config.yaml")
    assert resolved["model"]["vocab_size"] == 16  # read from ssl_tokens/meta.json
    # saved in full: the code's defaults of every section, so the file alone reproduces the run
    assert resolved["data"]["pool_size"] == 2000 and resolved["optim"]["betas"] == [0.9, 0.98]
    assert resolved["ema"] == {"decay": 0.0} and resolved["train"]["grad_accum"] == 1
    assert resolved["model"]["transformer"]["dropout"] == 0.0 and resolved["model"]["prefix_activation"] == "gelu"
    val = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "val_ce_bits" in line]
    assert [v["step"] for v in val] == [2, 3] and all(v["val_ce_bits"] > 0 for v in val)
    assert result["unigram_bits"] == pytest.approx(4.0, abs=0.1)
    assert (exp / "checkpoints" / "step_00000003" / "stage1.safetensors").is_file()


def test_resume_reproduces_the_next_loss(pretrained, token_data, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(pretrained[0], exp)
    shutil.rmtree(exp / "checkpoints" / "step_00000003")
    (exp / "metrics.jsonl").write_text("")
    pretrain(config("pretrain", "train.max_steps=3"), exp, [token_data[0]])
    assert losses(exp)[0]["step"] == 3
    assert losses(exp)[0]["loss"] == pytest.approx(losses(pretrained[0])[-1]["loss"], rel=1e-5)


def test_resuming_a_run_saved_before_a_key_existed_counts_the_key_at_its_default(pretrained, token_data, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(pretrained[0], exp)
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    clip = saved["train"].pop("grad_clip")  # as if the run was trained before the code had train.grad_clip
    (exp / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(MetisError, match=rf"another config \(train.grad_clip: {clip!r} -> {clip / 2!r}\)"):
        pretrain(config("pretrain", "train.max_steps=4", f"train.grad_clip={clip / 2}"), exp, [token_data[0]])
    assert sorted(p.name for p in (exp / "checkpoints").iterdir())[-1] == "step_00000003"  # nothing lost
    pretrain(config("pretrain", "train.max_steps=4"), exp, [token_data[0]])  # the default: the same run, resumed
    assert losses(exp)[-1]["step"] == 4


def test_another_config_in_a_trained_exp_dir_is_refused_and_overwrite_starts_again(pretrained, token_data, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(pretrained[0], exp)
    before = sorted(p.name for p in (exp / "checkpoints").iterdir())
    with pytest.raises(
        MetisError,
        match=r"holds a run with another config \(model.transformer.dim: 32 -> 48\); to start again there pass "
        r"--overwrite, or give a new exp dir",
    ):
        pretrain(config("pretrain", "train.max_steps=3", "model.transformer.dim=48"), exp, [token_data[0]])
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == before  # nothing lost
    assert load_config(exp / "config.yaml")["model"]["transformer"]["dim"] == 32
    pretrain(config("pretrain", "train.max_steps=4"), exp, [token_data[0]])  # more steps: the same run, resumed
    assert losses(exp)[-1]["step"] == 4
    args = [
        "pretrain",
        str(REPO / "conf" / "mini" / "pretrain.yaml"),
        str(exp),
        *SMALL,
        "train.max_steps=1",
        "model.transformer.dim=48",
        "--train-data",
        str(token_data[0]),
    ]
    # --check-config: how a config differs from the finished run (its steps too), without touching it
    checked = runner.invoke(app, [*args[:3], *SMALL, "train.max_steps=4", "train.log_every=9", "--check-config"])
    assert checked.exit_code == 0 and checked.output == "", checked.output  # how often it logs leaves the model
    checked = runner.invoke(app, [*args, "--check-config"])
    assert checked.exit_code == 0 and checked.output.splitlines() == [
        "model.transformer.dim: 32 -> 48",
        "train.max_steps: 4 -> 1",
    ]
    assert load_config(exp / "config.yaml")["model"]["transformer"]["dim"] == 32 and losses(exp)[-1]["step"] == 4
    # A run saved before the code had a key counts with the code's default for it: only another value shows
    older = tmp_path / "older"
    older.mkdir()
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    clip = saved["train"].pop("grad_clip")
    (older / "config.yaml").write_text(yaml.safe_dump(saved))
    same = [*args[:2], str(older), *SMALL, "train.max_steps=4", "--train-data", str(token_data[0]), "--check-config"]
    assert runner.invoke(app, same).output == ""
    checked = runner.invoke(app, [*same, f"train.grad_clip={clip / 2}"])
    assert checked.output.splitlines() == [f"train.grad_clip: {clip!r} -> {clip / 2!r}"], checked.output
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "--overwrite" in refused.output and "Traceback" not in refused.output
    result = runner.invoke(app, args + ["--overwrite"])
    assert result.exit_code == 0, result.output
    assert load_config(exp / "config.yaml")["model"]["transformer"]["dim"] == 48 and losses(exp)[-1]["step"] == 1
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = runner.invoke(
        app,
        [
            "pretrain",
            str(REPO / "conf" / "mini" / "pretrain.yaml"),
            str(other),
            "--train-data",
            str(token_data[0]),
            "--overwrite",
        ],
    )
    assert refused.exit_code == 1 and "not an experiment dir" in refused.output and (other / "keep.txt").exists()


def test_a_checkpoint_that_does_not_fit_says_why_on_its_first_line(pretrained):
    from metis_cli.checkpoint import load_weights

    other = Stage1Model(
        Stage1Config.from_dict(
            {"vocab_size": 16, "transformer": {"dim": 48, "n_layers": 2, "n_heads": 2, "ffn_dim": 64}}
        )
    )
    with pytest.raises(MetisError) as caught:
        load_weights(pretrained[0], "stage1", other)
    first = str(caught.value).splitlines()[0]
    assert "no readable model checkpoint in" in first and "size mismatch for" in first


def test_two_trainers_cannot_share_an_exp_dir(token_data, tmp_path):
    from metis_cli.train.trainer import TrainConfig, Trainer

    first = Trainer(tmp_path / "exp", {"a": 1}, TrainConfig())
    with pytest.raises(
        MetisError, match=rf"exp is being trained by pid {os.getpid()}; wait for it to finish or use another exp dir"
    ):
        Trainer(tmp_path / "exp", {"a": 1}, TrainConfig())
    first.release()
    Trainer(tmp_path / "exp", {"a": 1}, TrainConfig()).release()


def test_cpu_bf16_autocast_only_where_the_cpu_computes_it(tmp_path, monkeypatch, caplog):
    import torch

    from metis_cli import env
    from metis_cli.train import trainer as trainer_module
    from metis_cli.train.trainer import TrainConfig, Trainer

    if torch.cuda.is_available():
        pytest.skip("the CPU's precision")
    for native in (True, False):
        monkeypatch.setattr(env, "cpu_bf16_native", lambda native=native: native)
        for wanted, used in ((False, False), ("auto", native), (True, True)):
            trainer = Trainer(tmp_path / f"exp_{native}_{wanted}", {}, TrainConfig(bf16_cpu=wanted))
            trainer.release()
            with trainer.autocast():
                assert torch.is_autocast_enabled("cpu") is used
    assert "bf16 on a CPU without AVX512-BF16 or AMX is emulated" in caplog.text  # true where it is not native
    assert trainer_module.RESUMABLE_KEYS >= {"train.bf16_cpu"}  # a resumed run on another CPU may change it
    with pytest.raises(MetisError, match="train.bf16_cpu is true, false or auto, not 'yes'"):
        TrainConfig.from_dict({"bf16_cpu": "yes"})


def test_gradient_checkpointing_changes_memory_not_the_losses(token_data, tmp_path):
    for name, value in (("plain", "false"), ("checkpointed", "true")):
        torch.manual_seed(0)
        pretrain(
            config("pretrain", "train.max_steps=3", f"train.gradient_checkpointing={value}"),
            tmp_path / name,
            [token_data[0]],
        )
    expected = [r["loss"] for r in losses(tmp_path / "plain")]
    assert [r["loss"] for r in losses(tmp_path / "checkpointed")] == pytest.approx(expected, rel=1e-5) and len(
        expected
    ) == 3


def test_a_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = Stage1Model(
        Stage1Config.from_dict(
            {"vocab_size": 16, "transformer": {"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64}}
        )
    )
    tokens = torch.randint(0, 16, (2, 24), generator=torch.Generator().manual_seed(1))
    masked = torch.rand(2, 24, generator=torch.Generator().manual_seed(2)) < 0.5
    valid, t = torch.ones(2, 24, dtype=torch.bool), torch.tensor([0.5, 0.5])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(tokens, masked, valid, t)[masked], tokens[masked])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_s2a_trains_on_the_weighted_codebooks(token_data, tmp_path):
    exp = tmp_path / "s2a"
    train_s2a(
        config("s2a", "train.max_steps=2", "model.predict_codebooks=[1,3]"), exp, [token_data[0]], [token_data[1]]
    )
    resolved = load_config(exp / "config.yaml")
    assert resolved["model"]["n_codebooks"] == 3 and resolved["model"]["codebook_size"] == 32
    assert resolved["codebook_weights"] == [0, 2, 1]
    val = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "val_acc_cb1" in line]
    assert set(val[-1]) == {"step", "val_ce_bits_cb1", "val_acc_cb1", "val_ce_bits_cb2", "val_acc_cb2"}
    with pytest.raises(MetisError, match="codebook 0 weight 1"):
        train_s2a(
            config("s2a", "model.predict_codebooks=[1,3]", "codebook_weights=[1,1,1]"),
            tmp_path / "bad",
            [token_data[0]],
        )


def test_bad_training_data_is_reported(token_data, tmp_path):
    with pytest.raises(MetisError, match="vocab_size is 99 but the data has n_clusters 16"):
        pretrain(config("pretrain", "model.vocab_size=99"), tmp_path / "a", [token_data[0]])
    no_codes = tmp_path / "no_codes"
    shutil.copytree(token_data[0], no_codes)
    shutil.rmtree(no_codes / "acoustic_codes")
    with pytest.raises(
        DataDirError, match=r"acoustic_codes: not found; write it with `metis codec encode` \(recipe stage 3\)"
    ):
        train_s2a(config("s2a"), tmp_path / "b", [no_codes])
    odd = write_token_datadir(tmp_path / "odd", n_utts=2)
    from metis_cli.data.arrays import ArrayWriter

    with ArrayWriter(odd / "acoustic_codes", "part-2") as w:
        w.write("spk0_zzz", np.zeros((50, 3), dtype=np.int16))
    with ArrayWriter(odd / "ssl_tokens", "part-2") as w:
        w.write("spk0_zzz", np.zeros(40, dtype=np.int16))
    with pytest.raises(DataDirError, match="'spk0_zzz': ssl_tokens 40 frames, acoustic_codes 50 frames"):
        UtteranceArrays([odd], ("ssl_tokens", "acoustic_codes"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command,config_name", [("pretrain", "pretrain"), ("train-s2a", "s2a")])
def test_two_gloo_processes_stay_in_sync(token_data, tmp_path, command, config_name):
    exp = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "metis_cli",
        command,
        str(REPO / "conf" / "mini" / f"{config_name}.yaml"),
        str(exp),
        *SMALL,
        "train.max_steps=2",
        "--train-data",
        str(token_data[0]),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (exp / "log" / "train.log").read_text()
    assert "step 2: weights identical on all 2 ranks" in log
    assert [r["step"] for r in losses(exp)] == [1, 2]


def test_resynth_and_generate_write_decode_dirs(pretrained, token_data, tiny_corpus, tmp_path):
    from metis_cli.train.codec import resolve_config, train_codec

    codec = tmp_path / "codec"
    train_codec(
        load_config(
            REPO / "conf" / "mini" / "codec_neural.yaml",
            resolve=resolve_config,
            overrides=[
                "train.max_steps=1",
                "model.quantizer.n_codebooks=3",
                "model.quantizer.codebook_size=32",
                "data.batch_size=1",
                "data.segment_seconds=0.32",
            ],
        ),
        codec,
        tiny_corpus / "mini_train",
    )
    s2a = tmp_path / "s2a"
    train_s2a(config("s2a", "train.max_steps=1"), s2a, [token_data[0]])
    data = token_data[1]
    out = tmp_path / "decode_dev"
    opts = ["--s2a", str(s2a), "--codec", str(codec), "--s2a-opt", "steps=[2,1]", "--batch-size", "4"]
    result = runner.invoke(app, ["resynth", str(data), str(out), *opts])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "decode.json").read_text())
    assert info["task"] == "resynth" and [s["steps"] for s in info["s2a_settings"]] == [2, 1, 1]
    assert info["codec_input"] == "codes"  # the neural codec decodes codes, as published
    assert info["checkpoints"]["s2a"] == [
        {"path": str((s2a / "checkpoints" / "step_00000001").resolve()), "weights": "s2a", "step": 1}
    ]
    assert info["checkpoints"]["codec"]["step"] == 1 and "stage1" not in info["checkpoints"]
    wavs = sorted((out / "wav").glob("*.wav"))
    assert len(wavs) == 6
    import soundfile as sf

    arrays = UtteranceArrays([data], ("ssl_tokens",))
    first = wavs[0].stem
    assert sf.info(wavs[0]).frames == arrays.lengths[first] * 320  # one 20 ms frame of audio per token
    stamp = wavs[0].stat().st_mtime_ns
    result = runner.invoke(app, ["resynth", str(data), str(out), *opts])  # a rerun decodes nothing again
    assert result.exit_code == 0 and "0 decoded now" in result.output and wavs[0].stat().st_mtime_ns == stamp
    oracle = tmp_path / "oracle_dev"  # every codebook from the ground truth: the codec's own resynthesis
    result = runner.invoke(app, ["resynth", str(data), str(oracle), *opts, "--oracle-codebooks", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((oracle / "decode.json").read_text())["oracle_codebooks"] == 3
    from metis_cli.audio import load_audio
    from metis_cli.codec.inference import load_codec

    truth = torch.from_numpy(
        UtteranceArrays([data], ("acoustic_codes",)).get(Piece(first, 0, arrays.lengths[first]))["acoustic_codes"]
    )
    with torch.no_grad():
        expected = np.clip(load_codec(codec).decode(truth[None].long())[0].numpy(), -1, 1)
    assert np.abs(load_audio(oracle / "wav" / f"{first}.wav")[0] - expected).max() < 1e-4  # 16-bit PCM
    result = runner.invoke(app, ["resynth", str(data), str(tmp_path / "y"), *opts, "--oracle-codebooks", "4"])
    assert result.exit_code == 1 and "oracle codebooks: 4 is not in 0..3" in result.output
    gen = tmp_path / "generate_dev"
    result = runner.invoke(
        app,
        [
            "resynth",
            str(data),
            str(gen),
            *opts,
            "--stage1",
            str(pretrained[0]),
            "--stage1-opt",
            "steps=2",
            "--no-prompt",
            "--bf16",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((gen / "decode.json").read_text())
    assert info["task"] == "generate" and info["dtype"] == "bfloat16" and info["checkpoints"]["stage1"]["step"] == 3
    # the registry's decoding of the pre-trained model (MaskGCT's), --stage1-opt over it
    assert info["stage1_settings"] == {**vars(MaskPredictSettings()), **TASKS["generate"].stage1_defaults, "steps": 2}
    fast = tmp_path / "generate_fast"  # int8 weights and the fast preset: its steps under the explicit ones
    s2a_only = ["--s2a", str(s2a), "--codec", str(codec), "--stage1", str(pretrained[0]), "--no-prompt"]
    result = runner.invoke(app, ["resynth", str(data), str(fast), *s2a_only, "--int8", "--preset", "fast"])
    assert result.exit_code == 0, result.output
    info = json.loads((fast / "decode.json").read_text())
    assert info["dtype"] == "float32, int8 linear weights" and info["stage1_settings"]["steps"] == 10
    assert [s["steps"] for s in info["s2a_settings"]] == [10, 4, 1]
    result = runner.invoke(app, ["resynth", str(data), str(tmp_path / "z"), *opts, "--int8", "--bf16"])
    assert result.exit_code == 1 and "--int8 and --bf16 exclude each other" in result.output
    result = runner.invoke(
        app, ["resynth", str(data), str(tmp_path / "x"), "--s2a", str(tmp_path / "missing"), "--codec", str(codec)]
    )
    assert result.exit_code == 1 and "config.yaml: not found" in result.output


def test_an_ema_is_kept_and_used_for_inference(token_data, tmp_path):
    from safetensors.torch import load_file

    from metis_cli.infer.generate import load_stage1

    exp = tmp_path / "ema"
    pretrain(config("pretrain", "train.max_steps=2", "ema.decay=0.5"), exp, [token_data[0]])
    checkpoint = exp / "checkpoints" / "step_00000002"
    ema, raw = load_file(str(checkpoint / "ema.safetensors")), load_file(str(checkpoint / "stage1.safetensors"))
    assert not torch.equal(ema["head.weight"], raw["head.weight"])
    model = load_stage1(exp)
    assert torch.equal(model.head.weight, ema["head.weight"])


def test_print_config_shows_the_defaults_and_a_typo_is_refused(tmp_path):
    args = ["pretrain", str(REPO / "conf/mini/pretrain.yaml"), str(tmp_path / "exp"), "--print-config"]
    shown = runner.invoke(app, [*args[:3], "optim.lr=0.002", *args[3:]])
    assert shown.exit_code == 0, shown.output
    printed = yaml.safe_load(shown.output)
    assert printed["optim"]["lr"] == 0.002 and printed["data"]["pool_size"] == 2000
    assert printed["train"]["gradient_checkpointing"] is False and not (tmp_path / "exp").exists()
    typo = tmp_path / "typo.yaml"
    broken = yaml.safe_load((REPO / "conf/mini/pretrain.yaml").read_text())
    broken["optim"]["learning_rate"] = 0.1
    typo.write_text(yaml.safe_dump(broken))
    bad = runner.invoke(app, ["pretrain", str(typo), str(tmp_path / "exp"), "--print-config"])
    assert bad.exit_code == 1 and "learning_rate" in bad.output
    # a YAML holds what differs from the code's defaults; an override may still set any key the code knows
    short = tmp_path / "short.yaml"
    base = yaml.safe_load((REPO / "conf/mini/pretrain.yaml").read_text())
    short.write_text(yaml.safe_dump({k: v for k, v in base.items() if k not in ("ema", "train")}))
    shown = runner.invoke(app, ["pretrain", str(short), str(tmp_path / "exp"), "ema.decay=0.999", "--print-config"])
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.output)["ema"] == {"decay": 0.999}
    missing = runner.invoke(app, ["pretrain", str(REPO / "conf/mini/pretrain.yaml"), str(tmp_path / "exp")])
    assert missing.exit_code == 1 and "give the training data: --train-data DIR" in missing.output
