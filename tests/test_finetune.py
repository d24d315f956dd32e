"""Task fine-tuning (TTS, VC, SE, TSE, L2S): on-the-fly inputs, adaptation modes, `metis finetune`,
`metis decode --task`, `metis synth`, and their bad input."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO, write_wav
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.config import load_config
from metis_cli.corpus import noise
from metis_cli.errors import MetisError
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.models.transformer import TransformerConfig
from metis_cli.tasks.adaptation import AdaptationConfig, adapt
from metis_cli.tasks.augment import (
    AugmentConfig,
    add_noise_and_reverb,
    mix_interferer,
    perturb_timbre,
    warp_formants,
)
from metis_cli.train.codec import resolve_config
from metis_cli.train.pretrain import PretrainLearner
from metis_cli.train.s2a import S2ALearner

runner = CliRunner()
SR = 16000
SMALL = [
    "model.transformer.dim=32",
    "model.transformer.n_layers=2",
    "model.transformer.n_heads=2",
    "model.transformer.ffn_dim=64",
    "train.log_every=1",
    "train.ckpt_every=2",
    "train.val_every=2",
    "optim.warmup_steps=1",
    "train.max_minutes=null",
]
TUNE = [o for o in SMALL if not o.startswith("model.")]  # a fine-tuned model takes its sizes from the pre-trained one


def voiced(seconds=1.0, f0=120.0, seed=0):
    """A harmonic signal with a formant-like envelope: enough structure for pitch and formant edits."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wav = sum(np.exp(-(((k * f0 - 700) / 400) ** 2)) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 30))
    return (0.3 * wav / np.abs(wav).max() + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


def test_timbre_perturbation_keeps_the_length_and_follows_the_seed():
    wav = voiced()
    cfg = AugmentConfig()
    a = perturb_timbre(wav, np.random.default_rng(1), cfg, SR)
    b = perturb_timbre(wav, np.random.default_rng(1), cfg, SR)
    c = perturb_timbre(wav, np.random.default_rng(2), cfg, SR)
    assert a.shape == wav.shape and np.array_equal(a, b) and not np.allclose(a, c)
    assert np.abs(a).max() <= 0.95 + 1e-6
    # A warp by 1 changes nothing; a warp by 1.3 moves the spectral peak (700 Hz) up.
    same = warp_formants(wav, 1.0, SR)
    assert np.abs(same - wav).max() < 1e-3
    freqs = np.fft.rfftfreq(len(wav), 1 / SR)

    def centroid(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        return float((freqs * power).sum() / power.sum())

    assert centroid(warp_formants(wav, 1.3, SR)) > centroid(wav) * 1.15


def test_pitch_shift_methods_move_the_pitch_or_leave_it():
    from metis_cli.codec.world import import_world

    pyworld, _ = import_world()
    wav = voiced(f0=120.0)

    def median_f0(x):
        f0, _ = pyworld.dio(x.astype(np.float64), SR, frame_period=5.0)
        return float(np.median(f0[f0 > 0]))

    octave = {"pitch_semitones": (12.0, 12.0), "formant_ratio": (1.0, 1.0)}
    for method in ("world", "phase_vocoder"):
        up = perturb_timbre(wav, np.random.default_rng(0), AugmentConfig(pitch_shift=method, **octave), SR)
        assert up.shape == wav.shape and np.isfinite(up).all()
        assert median_f0(up) == pytest.approx(2 * median_f0(wav), rel=0.08), method
    # none: the pitch range is drawn (the same random stream) but not applied; a ratio of 1 leaves the audio
    kept = perturb_timbre(wav, np.random.default_rng(0), AugmentConfig(pitch_shift="none", **octave), SR)
    assert np.abs(kept / np.abs(kept).max() - wav / np.abs(wav).max()).max() < 1e-2
    with pytest.raises(MetisError, match="augment.pitch_shift: 'psola' is not one of phase_vocoder, world, none"):
        AugmentConfig.from_dict({"pitch_shift": "psola"})


def test_noise_and_interference_are_added_at_the_drawn_level():
    clean = voiced(seed=1)
    fixed = AugmentConfig(snr_db=(10.0, 10.0), reverb_prob=0.0, noise_types=("white",), sir_db=(3.0, 3.0))

    def level_db(out, signal):  # undo the peak limiter's gain, then compare signal and the rest
        gain = float(out @ signal / (signal @ signal))
        return 10 * np.log10(noise.power(signal) / noise.power(out / gain - signal))

    noisy = add_noise_and_reverb(clean, np.random.default_rng(0), fixed, SR)
    assert noisy.shape == clean.shape and abs(level_db(noisy, clean) - 10.0) < 0.5
    assert np.array_equal(noisy, add_noise_and_reverb(clean, np.random.default_rng(0), fixed, SR))
    other = 0.1 * np.random.default_rng(5).standard_normal(SR * 2).astype(np.float32)  # uncorrelated with clean
    mixture = mix_interferer(clean, other, np.random.default_rng(0), fixed)
    assert mixture.shape == clean.shape and abs(level_db(mixture, clean) - 3.0) < 0.5
    assert np.abs(mixture).max() <= 0.95 + 1e-6
    with pytest.raises(MetisError, match="babble noise needs other utterances"):
        add_noise_and_reverb(clean, np.random.default_rng(3), AugmentConfig(noise_types=("babble",)), SR)


def test_trainable_counts_match_the_published_ones_at_full_size():
    with torch.device("meta"):

        def model(**kw):
            return Stage1Model(
                Stage1Config(
                    vocab_size=8192,
                    transformer=TransformerConfig(dim=1536, n_layers=16, n_heads=16, ffn_dim=6144),
                    **kw,
                )
            )

        lora = adapt(model(), AdaptationConfig(mode="lora", rank=32))
        adapter = adapt(model(frame_condition_dim=1024), AdaptationConfig(mode="adapter"))
        both = adapt(model(frame_condition_dim=1024), AdaptationConfig(mode="lora", rank=16))
        full = adapt(model(n_phones=1024), AdaptationConfig(mode="full"))
    print(
        f"\nLoRA r=32: {lora['trainable']:,}; adapter: {adapter['trainable']:,}; LoRA r=16 + adapter: "
        f"{both['trainable']:,}"
    )
    assert lora["trainable"] == lora["lora"] == 18_087_936
    assert adapter["trainable"] == adapter["condition"] == 15_736_321
    assert both["trainable"] == 9_043_968 + 15_736_321
    assert full["trainable"] == full["total"]
    with pytest.raises(MetisError, match="adaptation.mode 'half' is not one of"):
        AdaptationConfig.from_dict({"mode": "half"})


def test_text_in_a_foreign_script_is_refused():
    from metis_cli.infer.task_decode import check_script

    check_script("Hello, world 42!", "en")
    with pytest.raises(MetisError, match="script that language 'en' does not read"):
        check_script("Привет мир", "en")


# --- the whole path on the tiny corpus ------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tiny_corpus, tmp_path_factory):
    """SSL tokens (builtin features, 16 clusters), a pre-trained stage 1, a codec and an S2A model, all tiny."""
    from metis_cli.codec.inference import encode_datadir
    from metis_cli.ssl.extract import extract_ssl
    from metis_cli.tokenizer.kmeans import train_kmeans
    from metis_cli.tokenizer.tokenize import tokenize
    from metis_cli.train.codec import train_codec
    from metis_cli.train.pretrain import pretrain
    from metis_cli.train.s2a import train_s2a

    root = tmp_path_factory.mktemp("finetune")
    extract_ssl(tiny_corpus / "mini_train", root / "ssl" / "train")
    extract_ssl(tiny_corpus / "mini_dev", root / "ssl" / "dev", stats=str(root / "ssl" / "train" / "stats.safetensors"))
    train_kmeans(root / "ssl" / "train", root / "kmeans", n_clusters=16, portion=1.0)
    for name in ("train", "dev"):
        tokenize(tiny_corpus / f"mini_{name}" / "ssl_tokens", root / "kmeans", feats_dir=root / "ssl" / name)
    pre = root / "pretrain"
    pretrain(
        load_config(REPO / "conf" / "mini" / "pretrain.yaml", SMALL + ["train.max_steps=2"], PretrainLearner.resolve),
        pre,
        [tiny_corpus / "mini_train"],
    )
    codec = root / "codec"
    train_codec(
        load_config(
            REPO / "conf" / "mini" / "codec_neural.yaml",
            resolve=resolve_config,
            overrides=[
                "train.max_steps=1",
                "model.quantizer.n_codebooks=2",
                "model.quantizer.codebook_size=16",
                "data.batch_size=1",
                "data.segment_seconds=0.32",
            ],
        ),
        codec,
        tiny_corpus / "mini_train",
    )
    encode_datadir(codec, tiny_corpus / "mini_train")
    s2a = root / "s2a"
    train_s2a(
        load_config(REPO / "conf" / "mini" / "s2a.yaml", SMALL + ["train.max_steps=1"], S2ALearner.resolve),
        s2a,
        [tiny_corpus / "mini_train"],
    )
    return {"root": root, "pretrain": pre, "codec": codec, "s2a": s2a, "corpus": tiny_corpus}


def finetune(models, task, exp, *overrides, train_data=None, config="finetune.yaml"):
    return runner.invoke(
        app,
        [
            "finetune",
            str(REPO / "egs" / task / "conf" / "mini" / config),
            str(exp),
            *TUNE,
            "train.max_steps=2",
            "data.val_utterances=2",
            *overrides,
            "--task",
            task,
            "--init",
            str(models["pretrain"]),
            "--train-data",
            str(train_data or models["corpus"] / "mini_train"),
            # the tiny dev set has phones the 12 training texts lack: validate on seen text
            "--val-data",
            str(models["corpus"] / ("mini_train" if task in ("tts", "omni") else "mini_dev")),
        ],
    )


def tts_set(corpus, path):
    """TTS inputs whose text the tiny model has seen (12 training sentences leave phones of the tiny
    test set unseen): training utterances, each prompted by another utterance of its speaker."""
    from metis_cli.data.datadir import DataDir

    train = DataDir(corpus / "mini_train")
    out = DataDir(path)
    utt2spk, texts, wavs = train.utt2spk, train.read("text"), train.read("wav.scp")
    utts = sorted(utt2spk)[:6]
    prompts = {u: next(o for o in sorted(utt2spk) if o != u and utt2spk[o] == utt2spk[u]) for u in utts}
    out.write("text", {u: texts[u] for u in utts})
    out.write("wav.scp", {u: wavs[u] for u in utts})
    out.write("prompt.scp", {u: wavs[p] for u, p in prompts.items()})
    out.write("prompt_text", {u: texts[p] for u, p in prompts.items()})
    out.write_utt2spk({u: utt2spk[u] for u in utts})
    return path


@pytest.fixture(scope="module")
def tuned(models):
    exps = {}
    decoders = ["--s2a", str(models["s2a"]), "--codec", str(models["codec"])]  # recorded: the API needs no paths
    for task in ("tts", "vc", "se", "tse", "l2s", "omni"):
        exp = models["root"] / f"{task}_exp"
        result = finetune(models, task, exp, *decoders)
        assert result.exit_code == 0, result.output
        exps[task] = exp
    return exps


@pytest.mark.parametrize(
    "task,test_set",
    [
        ("tts", "mini_test"),
        ("vc", "mini_vc_test"),
        ("se", "mini_se_test"),
        ("tse", "mini_tse_test"),
        ("l2s", "mini_test"),
    ],
)
def test_each_task_fine_tunes_and_decodes_a_data_dir(models, tuned, task, test_set, tmp_path):
    exp = tuned[task]
    config = load_config(exp / "config.yaml")
    assert config["task"] == task and config["init"]["checkpoint"].endswith("step_00000002")
    counts = json.loads((exp / "parameters.json").read_text())
    assert 0 < counts["trainable"] <= counts["total"]
    assert (counts["lora"] > 0) == (config["adaptation"]["mode"] == "lora")
    assert (exp / "kmeans" / "kmeans.safetensors").is_file() and (exp / "ssl_stats.safetensors").is_file()
    if task == "tts":
        assert (exp / "phones.txt").read_text().startswith("<pad>\n") and config["model"]["n_phones"] > 10
    elif task == "l2s":
        assert config["model"]["frame_condition_dim"] == config["model"]["visual"]["out_dim"] == 64
        assert counts["trainable"] == counts["total"]  # full fine-tuning, the visual front end included
    else:
        assert config["model"]["frame_condition_dim"] == 39
    val = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "val_ce_bits" in line]
    assert val and val[-1]["val_ce_bits"] > 0
    # the floors the validation reads a condition against: another utterance's text, the video shuffled in time
    floor = {"tts": "val_ce_bits_shuffled_text", "l2s": "val_ce_bits_shuffled_video"}.get(task)
    assert (floor in val[-1] and val[-1][floor] > 0) if floor else not any("shuffled" in k for k in val[-1])
    out = tmp_path / "decode"
    opts = [
        "--task",
        task,
        "--model",
        str(exp),
        "--s2a",
        str(models["s2a"]),
        "--codec",
        str(models["codec"]),
        "--out",
        str(out),
        "--stage1-opt",
        "steps=2",
        "--s2a-opt",
        "steps=[2,1]",
        "--batch-size",
        "2",
    ]
    data = tts_set(models["corpus"], tmp_path / "tts_set") if task == "tts" else models["corpus"] / test_set
    result = runner.invoke(app, ["decode", str(data), *opts])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "decode.json").read_text())
    assert info["task"] == task and info["stage1_settings"]["steps"] == 2 and info["real_time_factor"] > 0
    from metis_cli.watermark import payload_for

    assert info["watermark"] == {
        "method": "keyed spectral ripple",
        "key": "default",
        "payload": f"{payload_for(exp.name):04x}",
        "strength_db": 2.2,
    }
    wavs = sorted((out / "wav").glob("*.wav"))
    assert len(wavs) == 6 and len((out / "wav.scp").read_text().splitlines()) == 6
    import soundfile as sf

    from metis_cli.data.datadir import DataDir

    if task == "l2s":  # two 20 ms token frames per 40 ms video frame
        from metis_cli.video import read_video

        video = read_video(DataDir(models["corpus"] / test_set).read("video.scp")[wavs[0].stem])
        assert sf.info(wavs[0]).frames == 2 * len(video) * 320
    elif task != "tts":  # the output is as long as the condition audio (one 20 ms frame per token)
        scp = {"vc": "src.scp", "se": "noisy.scp", "tse": "mix.scp"}[task]
        source = DataDir(models["corpus"] / test_set).read(scp)[wavs[0].stem]
        assert sf.info(wavs[0]).frames == sf.info(source).frames // 320 * 320
    stamp = wavs[0].stat().st_mtime_ns
    again = runner.invoke(app, ["decode", str(data), *opts])
    assert again.exit_code == 0 and "0 decoded now" in again.output and wavs[0].stat().st_mtime_ns == stamp


def test_omni_mixture_draws_tasks_by_weight_and_checks_its_config():
    from metis_cli.train.finetune import FinetuneLearner

    task = FinetuneLearner.__new__(FinetuneLearner)
    task.task = "omni"
    task._mixture(
        {"mixture": {"tts": {"weight": 3}, "se": {"weight": 1, "prompt_prob": 0.0}}, "masking": {"prompt_prob": 0.5}}
    )
    assert task.modes == ["tts", "se"] and task.needs_text
    assert task.mode_masking["se"].prompt_prob == 0.0 and task.mode_masking["tts"].prompt_prob == 0.5
    draws = [task._draw_mode(torch.Generator().manual_seed(i)) for i in range(2000)]
    assert draws == [task._draw_mode(torch.Generator().manual_seed(i)) for i in range(2000)]  # seeded: exact resume
    assert 0.72 < draws.count("tts") / len(draws) < 0.78
    task.forced_mode = "se"
    assert task._draw_mode(torch.Generator().manual_seed(0)) == "se"
    for bad, message in (
        ({"l2s": {}}, "not l2s"),
        ({}, "must name tasks"),
        ({"tts": {"weight": -1}}, "non-negative"),
        ({"tts": {"wieght": 1}}, "unknown key"),
    ):
        with pytest.raises(MetisError, match=message):
            task._mixture({"mixture": bad})
    task.task = "se"
    with pytest.raises(MetisError, match="mixture is for task omni"):
        task._mixture({"mixture": {"se": {}}})


def test_omni_decodes_every_task_and_text_guided_tse(models, tuned, tmp_path):
    exp = tuned["omni"]
    config = load_config(exp / "config.yaml")
    assert config["model"]["n_phones"] > 10 and config["model"]["frame_condition_dim"] == 39
    val = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "val_ce_bits" in line][-1]
    assert {f"val_ce_bits_{m}" for m in ("tts", "vc", "se", "tse")} <= set(val)
    assert val["val_ce_bits"] == pytest.approx(sum(val[f"val_ce_bits_{m}"] for m in ("tts", "vc", "se", "tse")) / 4)
    opts = [
        "--task",
        "omni",
        "--model",
        str(exp),
        "--s2a",
        str(models["s2a"]),
        "--codec",
        str(models["codec"]),
        "--stage1-opt",
        "steps=2",
        "--s2a-opt",
        "steps=[2,1]",
        "--batch-size",
        "3",
    ]
    result = runner.invoke(app, ["decode", str(models["corpus"] / "mini_tse_test"), *opts])
    assert result.exit_code == 1 and "give --mode tts|vc|se|tse" in result.output
    import shutil

    from metis_cli.data.datadir import DataDir

    guided = tmp_path / "tse_text"  # TSE inputs with words the tiny model knows (its 12 training sentences)
    shutil.copytree(models["corpus"] / "mini_tse_test", guided)
    known = list(DataDir(models["corpus"] / "mini_train").read("text").values())
    for name in ("text", "prompt_text"):  # the target's and the enrollment's words
        DataDir(guided).write(name, {u: known[i % len(known)] for i, u in enumerate(DataDir(guided).utt_ids())})
    for mode, data, text in (
        ("tts", tts_set(models["corpus"], tmp_path / "tts_set"), False),
        ("se", models["corpus"] / "mini_se_test", False),
        ("tse", guided, True),
    ):
        out = tmp_path / f"{mode}_{text}"
        result = runner.invoke(
            app, ["decode", str(data), *opts, "--mode", mode, "--out", str(out)] + (["--text-guided"] if text else [])
        )
        assert result.exit_code == 0, result.output
        info = json.loads((out / "decode.json").read_text())
        assert info["task"] == mode and info["model_task"] == "omni" and info["text_guided"] == text
        assert len((out / "wav.scp").read_text().splitlines()) == 6
    single = [
        "--model",
        str(tuned["tse"]),
        "--s2a",
        str(models["s2a"]),
        "--codec",
        str(models["codec"]),
        "--out",
        str(tmp_path / "x"),
    ]
    result = runner.invoke(
        app, ["decode", str(models["corpus"] / "mini_tse_test"), "--task", "tse", *single, "--text-guided"]
    )
    assert result.exit_code == 1 and "text-guided decoding needs an omni model" in result.output
    result = runner.invoke(
        app, ["decode", str(models["corpus"] / "mini_tse_test"), "--task", "tse", *single, "--mode", "se"]
    )
    assert result.exit_code == 1 and "a tse model decodes tse only" in result.output


def test_the_fine_tuned_model_starts_as_the_pre_trained_one(models, tmp_path):
    """With LoRA (B = 0) and the frame adapter (gate = 0) added, the outputs equal the pre-trained model's."""
    from metis_cli.infer.generate import load_stage1
    from metis_cli.train.finetune import FinetuneLearner
    from metis_cli.train.trainer import TrainConfig, Trainer

    config = REPO / "egs" / "vc" / "conf" / "mini" / "finetune.yaml"
    cfg = load_config(config, TUNE + ["adaptation.dropout=0.0"], FinetuneLearner.resolve)
    cfg["init"] = {"exp_dir": str(models["pretrain"])}
    trainer = Trainer(tmp_path / "vc", cfg, TrainConfig.from_dict(cfg["train"]))
    learner = FinetuneLearner(trainer, cfg, [models["corpus"] / "mini_train"])
    base = load_stage1(models["pretrain"])
    generator = torch.Generator().manual_seed(0)
    batch = learner.make_batch(learner.train_data, learner.batches(0), generator)
    assert batch["condition"].shape[:2] == batch["ssl_tokens"].shape and batch["condition"].shape[2] == 39
    assert not torch.equal(batch["condition"], batch["clean_condition"])
    tokens, valid = batch["ssl_tokens"], batch["valid"]
    masked = torch.rand(tokens.shape, generator=generator) < 0.5
    t = torch.full((len(tokens),), 0.5)
    learner.model.eval()
    with torch.no_grad():
        tuned = learner.model(tokens, masked, valid, t, frame_condition=batch["condition"])
        plain = base(tokens, masked, valid, t)
    assert torch.allclose(tuned[valid], plain[valid], atol=1e-5)


def test_synth_runs_each_task_on_files(models, tuned, tmp_path):
    from metis_cli.data.datadir import DataDir

    corpus = models["corpus"]
    common = [
        "--s2a",
        str(models["s2a"]),
        "--codec",
        str(models["codec"]),
        "--stage1-opt",
        "steps=2",
        "--s2a-opt",
        "steps=[2,1]",
    ]
    test = DataDir(tts_set(corpus, tmp_path / "tts_set"))
    utt = test.utt_ids()[0]
    prompt = test.read("prompt.scp")[utt]
    out = tmp_path / "tts.wav"
    result = runner.invoke(
        app,
        [
            "synth",
            "--task",
            "tts",
            "--model",
            str(tuned["tts"]),
            *common,
            "--text",
            test.read("text")[utt],
            "--ref",
            prompt,
            "--ref-text",
            test.read("prompt_text")[utt],
            "--duration",
            "1.5",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    import soundfile as sf

    assert sf.info(out).frames == 75 * 320  # --duration 1.5 s: 75 frames
    se = DataDir(corpus / "mini_se_test")
    noisy = se.read("noisy.scp")[se.utt_ids()[0]]
    result = runner.invoke(
        app,
        [
            "synth",
            "--task",
            "se",
            "--model",
            str(tuned["se"]),
            *common,
            "--noisy",
            noisy,
            "-o",
            str(tmp_path / "se.wav"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sf.info(tmp_path / "se.wav").frames == sf.info(noisy).frames // 320 * 320
    # Every output is watermarked unless asked not to be (with a warning).
    from metis_cli.watermark import detect, payload_for

    found = detect(*sf.read(tmp_path / "se.wav", dtype="float32"))
    assert found.detected and found.payload == payload_for(tuned["se"].name)
    result = runner.invoke(
        app,
        [
            "synth",
            "--task",
            "se",
            "--model",
            str(tuned["se"]),
            *common,
            "--noisy",
            noisy,
            "--no-watermark",
            "-o",
            str(tmp_path / "plain.wav"),
        ],
    )
    assert result.exit_code == 0 and "watermarking is off" in result.output
    assert not detect(*sf.read(tmp_path / "plain.wav", dtype="float32")).detected
    l2s = DataDir(corpus / "mini_test")
    utt = l2s.utt_ids()[0]
    result = runner.invoke(
        app,
        [
            "synth",
            "--task",
            "l2s",
            "--model",
            str(tuned["l2s"]),
            *common,
            "--video",
            l2s.read("video.scp")[utt],
            "--ref",
            l2s.read("prompt.scp")[utt],
            "-o",
            str(tmp_path / "l2s.wav"),
        ],
    )
    assert result.exit_code == 0, result.output
    np.save(tmp_path / "feats.npy", np.zeros((50, 64), np.float32))
    result = runner.invoke(
        app,
        [
            "synth",
            "--task",
            "l2s",
            "--model",
            str(tuned["l2s"]),
            *common,
            "--video",
            str(tmp_path / "feats.npy"),
            "--ref",
            l2s.read("prompt.scp")[utt],
            "-o",
            str(tmp_path / "npy.wav"),
        ],
    )
    assert result.exit_code == 1 and "this l2s model takes mouth video" in result.output
    # Omni: the task follows the inputs; the mixture + enrollment + words is text-guided TSE.
    tse = DataDir(corpus / "mini_tse_test")
    utt = tse.utt_ids()[0]
    known = sorted(DataDir(corpus / "mini_train").read("text").values())  # words the tiny model knows
    guided = [
        "--mix",
        tse.read("mix.scp")[utt],
        "--ref",
        tse.read("enroll.scp")[utt],
        "--text",
        known[0],
        "--ref-text",
        known[1],
    ]
    result = runner.invoke(
        app,
        ["synth", "--task", "omni", "--model", str(tuned["omni"]), *common, *guided, "-o", str(tmp_path / "omni.wav")],
    )
    assert result.exit_code == 0, result.output
    assert sf.info(tmp_path / "omni.wav").frames == sf.info(tse.read("mix.scp")[utt]).frames // 320 * 320
    result = runner.invoke(
        app, ["synth", "--task", "tse", "--model", str(tuned["tse"]), *common, *guided, "-o", str(tmp_path / "no.wav")]
    )
    assert result.exit_code == 1 and "--task tse takes --mix, --ref, not --ref-text, --text" in result.output
    result = runner.invoke(
        app,
        [
            "synth",
            "--task",
            "omni",
            "--model",
            str(tuned["omni"]),
            *common,
            "--noisy",
            noisy,
            "--duration",
            "2",
            "-o",
            str(tmp_path / "no.wav"),
        ],
    )
    assert (
        result.exit_code == 1
        and "--task omni --mode se takes --noisy, --ref-text, --text, not --duration" in result.output
    )


def test_l2s_reads_the_lips_and_takes_precomputed_features(models, tuned, tmp_path):
    """Shuffling the frames in time changes what an L2S model hears; a model can also learn from feats.scp."""
    from metis_cli.data.datadir import DataDir
    from metis_cli.infer.task_decode import TaskInput, TaskModel
    from metis_cli.video import read_visual_input

    test = DataDir(models["corpus"] / "mini_test")
    utt = test.utt_ids()[0]
    item = TaskInput(
        utt,
        visual=read_visual_input(test.read("video.scp")[utt], False),
        prompt=test.load_audio(utt, 16000, scp="prompt.scp")[0],
    )
    plain = TaskModel(tuned["l2s"], [models["s2a"]], models["codec"]).prepare(item)
    shuffled = TaskModel(tuned["l2s"], [models["s2a"]], models["codec"], shuffle_video=True).prepare(item)
    n_prompt = len(plain["prompt_tokens"])
    assert plain["frames"] == shuffled["frames"] == 2 * len(item.visual)
    assert torch.count_nonzero(plain["condition"][:n_prompt]) == 0  # zero over the prompt
    assert not torch.allclose(plain["condition"][n_prompt:], shuffled["condition"][n_prompt:])
    # Pre-computed features: any dimension, 25 fps, one .npy per utterance.
    corpus = tmp_path / "corpus"
    import shutil

    for name in ("mini_train", "mini_dev"):
        shutil.copytree(models["corpus"] / name, corpus / name)
        dd = DataDir(corpus / name)
        feats = {}
        for u, seconds in dd.read("utt2dur").items():
            path = tmp_path / "feats" / f"{u}.npy"
            path.parent.mkdir(exist_ok=True)
            np.save(path, np.random.default_rng(0).standard_normal((int(float(seconds) * 25), 12)).astype(np.float32))
            feats[u] = str(path)
        dd.write("feats.scp", feats)
    result = runner.invoke(
        app,
        [
            "finetune",
            str(REPO / "egs" / "l2s" / "conf" / "mini" / "finetune.yaml"),
            str(tmp_path / "exp"),
            *TUNE,
            "train.max_steps=2",
            "data.val_utterances=2",
            "model.visual=null",
            "--task",
            "l2s",
            "--init",
            str(models["pretrain"]),
            "--train-data",
            str(corpus / "mini_train"),
            "--val-data",
            str(corpus / "mini_dev"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "exp" / "config.yaml")["model"]["frame_condition_dim"] == 12


def test_synth_bad_input_fails_clearly_and_writes_nothing(models, tuned, tmp_path):
    from metis_cli.data.datadir import DataDir

    corpus = models["corpus"]
    common = [
        "--s2a",
        str(models["s2a"]),
        "--codec",
        str(models["codec"]),
        "--stage1-opt",
        "steps=1",
        "--s2a-opt",
        "steps=[1]",
    ]
    test = DataDir(tts_set(corpus, tmp_path / "tts_set"))
    utt = test.utt_ids()[0]
    prompt, prompt_text = test.read("prompt.scp")[utt], test.read("prompt_text")[utt]
    text = test.read("text")[utt]
    short = write_wav(tmp_path / "short.wav", seconds=0.5)
    silent = tmp_path / "silent.wav"
    import soundfile as sf

    sf.write(silent, np.zeros(SR * 2, dtype=np.float32), SR)
    speech = DataDir(corpus / "mini_tse_test").read("mix.scp")[DataDir(corpus / "mini_tse_test").utt_ids()[0]]
    wav, _ = sf.read(speech)
    rate8k = tmp_path / "mix8k.wav"
    sf.write(rate8k, wav[::2], 8000)
    out = tmp_path / "out.wav"
    cases = [
        (
            [
                "--task",
                "tts",
                "--model",
                str(tuned["tts"]),
                "--text",
                "   ",
                "--ref",
                prompt,
                "--ref-text",
                prompt_text,
            ],
            "the text is empty",
        ),
        (
            [
                "--task",
                "tts",
                "--model",
                str(tuned["tts"]),
                "--text",
                "Привет мир",
                "--ref",
                prompt,
                "--ref-text",
                prompt_text,
            ],
            "does not read",
        ),
        (
            [
                "--task",
                "tts",
                "--model",
                str(tuned["tts"]),
                "--text",
                text,
                "--ref",
                str(short),
                "--ref-text",
                prompt_text,
            ],
            "at least 1 s",
        ),
        (["--task", "vc", "--model", str(tuned["vc"]), "--src", str(silent), "--ref", prompt], "the source is silent"),
        (
            ["--task", "tse", "--model", str(tuned["tse"]), "--mix", str(rate8k), "--ref", prompt],
            "8000 Hz; this model takes 16000 Hz",
        ),
        (["--task", "se", "--model", str(tuned["vc"]), "--noisy", speech], "holds a vc model, not se"),
        (
            ["--task", "se", "--model", str(tuned["se"]), "--noisy", speech, "--text", "hi"],
            "--task se takes --noisy, not --text",
        ),
        (["--task", "se", "--model", str(models["pretrain"]), "--noisy", speech], "not a fine-tuned task model"),
        (
            [
                "--task",
                "tts",
                "--model",
                str(tuned["tts"]),
                "--text",
                " ".join([text] * 30),
                "--ref",
                prompt,
                "--ref-text",
                prompt_text,
            ],
            "longer than the model's limit",
        ),
        (
            ["--task", "se", "--model", str(tuned["se"]), "--noisy", f"cat {speech} |"],
            "shell command, which only wav.scp entries may be",
        ),
        (
            [
                "--task",
                "se",
                "--model",
                str(tuned["se"]),
                "--noisy",
                speech,
                "--device",
                "cuda:7" if torch.cuda.is_available() else "cuda",
            ],
            "--device cuda",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["synth", *args, *common, "-o", str(out)])
        assert result.exit_code != 0 and message in result.output, (args, result.output[-2000:])
        assert not out.exists()


def test_decode_logs_and_skips_an_utterance_with_bad_input(models, tuned, tmp_path):
    from metis_cli.data.datadir import DataDir

    src = DataDir(models["corpus"] / "mini_se_test")
    data = DataDir(tmp_path / "se_set")
    utts = src.utt_ids()[:2]
    for name in ("wav.scp", "text"):
        data.write(name, {u: v for u, v in src.read(name).items() if u in utts})
    data.write_utt2spk({u: src.utt2spk[u] for u in utts})
    noisy = src.read("noisy.scp")
    data.write("noisy.scp", {utts[0]: noisy[utts[0]], utts[1]: str(tmp_path / "missing.wav")})
    out = tmp_path / "decode"
    result = runner.invoke(
        app,
        [
            "decode",
            str(data.path),
            "--task",
            "se",
            "--model",
            str(tuned["se"]),
            "--s2a",
            str(models["s2a"]),
            "--codec",
            str(models["codec"]),
            "--out",
            str(out),
            "--stage1-opt",
            "steps=1",
            "--s2a-opt",
            "steps=[1]",
        ],
    )
    assert result.exit_code == 1 and "1 failed" in result.output
    assert (out / "wav" / f"{utts[0]}.wav").is_file() and not (out / "wav" / f"{utts[1]}.wav").exists()
    assert utts[1] in (out / "failed").read_text() and "missing.wav" in (out / "failed").read_text()
    wrong = runner.invoke(
        app,
        [
            "decode",
            str(data.path),
            "--task",
            "tts",
            "--model",
            str(tuned["se"]),
            "--s2a",
            str(models["s2a"]),
            "--codec",
            str(models["codec"]),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert wrong.exit_code != 0 and "holds a se model, not tts" in wrong.output


def test_lip_to_speech_refuses_a_video_that_does_not_cover_its_audio(models, tmp_path):
    import shutil

    from metis_cli.corpus.lips import write_video
    from metis_cli.data.datadir import DataDir

    train = tmp_path / "mini_train"
    shutil.copytree(models["corpus"] / "mini_train", train)
    dd = DataDir(train)
    videos = dd.read("video.scp")
    utt = sorted(videos)[0]
    write_video(tmp_path / "short.mp4", np.full((10, 88, 88), 128, np.uint8))  # 0.4 s at 25 fps
    videos[utt] = str(tmp_path / "short.mp4")
    dd.write("video.scp", videos)
    result = finetune(models, "l2s", tmp_path / "exp", "train.max_steps=1", train_data=train)
    message = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"short.mp4 (utterance '{utt}'): the video lasts 0.40 s but the audio" in message, message
    assert "Traceback" not in result.output


def test_a_model_fine_tuned_with_its_decoders_decodes_without_naming_them(models, tmp_path):
    from metis_cli.config import read_exp_config

    exp = tmp_path / "se"
    decoders = ["--s2a", str(models["s2a"]), "--codec", str(models["codec"])]
    result = finetune(models, "se", exp, "train.max_steps=1", *decoders)
    assert result.exit_code == 0, result.output
    s2a, codec = str(models["s2a"].resolve()), str(models["codec"].resolve())
    assert read_exp_config(exp)["decoder"] == {"s2a": [s2a], "codec": codec}
    data = models["corpus"] / "mini_se_test"
    steps = ["--stage1-opt", "steps=1", "--s2a-opt", "steps=[1]", "--no-watermark"]
    result = runner.invoke(
        app, ["decode", str(data), "--task", "se", "--model", str(exp), *steps, "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "decode.json").read_text())["codec"] == codec
    plain = tmp_path / "plain"
    assert finetune(models, "se", plain, "train.max_steps=1").exit_code == 0
    result = runner.invoke(app, ["decode", str(data), "--task", "se", "--model", str(plain), *steps])
    assert result.exit_code == 1 and "records no S2A model and codec to decode with: give --s2a and --codec" in (
        " ".join(result.output.split())
    )


# --- the Python API ---------------------------------------------------------------------------------------
def test_the_readme_python_snippet_runs_as_written(models, tuned, tmp_path, monkeypatch):
    """Exactly the README's snippet, in a folder laid out as the recipes leave it (tiny models)."""
    import re
    import shutil

    import soundfile as sf

    from metis_cli.data.datadir import DataDir
    from metis_cli.watermark import detect, payload_for

    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S).group(1)
    for task in ("tts", "vc"):
        (tmp_path / "egs" / task / "exp").mkdir(parents=True)
        (tmp_path / "egs" / task / "exp" / f"{task}_mini").symlink_to(tuned[task])
    wavs = DataDir(models["corpus"] / "mini_train").read("wav.scp")
    utts = sorted(wavs)
    for name, utt in (("prompt.wav", utts[0]), ("src1.wav", utts[1]), ("src2.wav", utts[2])):
        shutil.copy(wavs[utt], tmp_path / name)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    wav, sr = sf.read(tmp_path / "hello.wav", dtype="float32")
    assert sr == 16000 and len(wav) > 0
    found = detect(wav, sr)
    assert found.detected and found.payload == payload_for("tts_mini")
    outputs = scope["outputs"]
    assert [len(o.wav) for o in outputs] == [sf.info(tmp_path / f"src{i}.wav").frames // 320 * 320 for i in (1, 2)]
    assert scope["vc"].device == "cpu" and scope["tts"].task == "tts" and outputs[0].sample_rate == 16000


def test_the_api_matches_synth_and_checks_its_inputs(models, tuned, tmp_path):
    import soundfile as sf

    from metis_cli import Audio, Metis
    from metis_cli.data.datadir import DataDir

    noisy_set = DataDir(models["corpus"] / "mini_se_test")
    utt = noisy_set.utt_ids()[0]
    noisy = noisy_set.read("noisy.scp")[utt]
    fast = {"stage1": {"steps": 2}, "s2a": {"steps": [2, 1]}}
    se = Metis.from_dirs(tuned["se"])
    assert se.tasks == ("se",) and se.sample_rate == 16000 and "se_exp" in repr(se)
    audio = se.se(noisy, seed=3, **fast)
    assert isinstance(audio, Audio) and audio.wav.dtype == np.float32
    # the same output as `metis synth` with the same settings and seed (written as 16-bit samples)
    out = tmp_path / "synth.wav"
    cli = ["synth", "--task", "se", "--model", str(tuned["se"]), "--noisy", noisy, "-o", str(out), "--seed", "3"]
    result = runner.invoke(app, [*cli, "--stage1-opt", "steps=2", "--s2a-opt", "steps=[2,1]"])
    assert result.exit_code == 0, result.output
    assert np.abs(sf.read(out, dtype="float32")[0] - audio.wav).max() < 1.5 / 32768
    # arrays in: the same audio; a batch: one output per item, in order
    wav = sf.read(noisy, dtype="float32")[0]
    assert np.array_equal(se.se(wav, seed=3, **fast).wav, audio.wav)
    batch = se.se([noisy, (wav, 16000)], seed=3, **fast)
    assert len(batch) == 2 and [len(a.wav) for a in batch] == [len(audio.wav)] * 2
    from metis_cli.watermark import detect

    assert detect(audio.wav, 16000).detected
    assert not detect(Metis.from_dirs(tuned["se"], watermark=False).se(noisy, seed=3, **fast).wav, 16000).detected
    # an Omni model answers each of its tasks; a single-task model only its own
    omni = Metis.from_dirs(tuned["omni"])
    assert omni.tasks == ("tts", "vc", "se", "tse") and len(omni.se(noisy, **fast).wav) == len(audio.wav)
    with pytest.raises(MetisError, match="holds a se model: it answers se, not vc"):
        se.vc(noisy, ref=noisy)
    with pytest.raises(MetisError, match="22050 Hz; this model takes 16000 Hz audio"):
        se.se((wav, 22050))
    with pytest.raises(MetisError, match="batched inputs of different lengths"):
        omni.vc([noisy, noisy], ref=[noisy])
    with pytest.raises(MetisError, match="unknown setting.*steps; give seed, stage1, s2a or names"):
        se.se(noisy, steps=3)
    with pytest.raises(MetisError, match="an array of shape \\(2, 10\\); give mono audio"):
        se.se(np.zeros((2, 10), dtype=np.float32))


def test_decode_splits_over_jobs_and_merges_one_decode_dir(models, tuned, tmp_path):
    import soundfile as sf

    from metis_cli.data.datadir import DataDir

    data = models["corpus"] / "mini_se_test"
    utts = DataDir(data).utt_ids()
    common = ["--task", "se", "--model", str(tuned["se"]), "--stage1-opt", "steps=1", "--s2a-opt", "steps=[1]"]
    out = tmp_path / "two"
    result = runner.invoke(app, ["decode", str(data), *common, "--out", str(out), "--nj", "2", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "decode.json").read_text())
    assert info["num_jobs"] == 2 and info["failed"] == 0 and info["real_time_factor"] > 0
    scp = dict(line.split(" ", 1) for line in (out / "wav.scp").read_text().splitlines())
    assert sorted(scp) == sorted(utts) and all(sf.info(p.strip()).frames > 0 for p in scp.values())
    assert info["watermark"]["payload"] and info["stage1_settings"]["steps"] == 1
    # a rerun finds everything written and decodes nothing
    result = runner.invoke(app, ["decode", str(data), *common, "--out", str(out), "--nj", "2"])
    assert result.exit_code == 0 and f"{len(utts)} utterances (0 decoded now, 0 failed)" in " ".join(
        result.output.split()
    )


def test_adapter_files_hold_what_was_trained_and_decode_like_the_whole_model(models, tuned, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from metis_cli import Metis
    from metis_cli.tasks.adapter_files import read_peft

    exp = tuned["vc"]
    counts = json.loads((exp / "parameters.json").read_text())
    info = json.loads((exp / "adapter" / "adapter.json").read_text())  # written by fine-tuning itself
    assert info["parameters"] == counts["trainable"] and info["model_parameters"] == counts["total"]
    assert info["bytes"] < info["model_bytes"] / 2 and info["base"]["exp_dir"] == str(models["pretrain"].resolve())
    adapter = load_file(str(exp / "adapter" / "adapter.safetensors"))
    assert all(k.endswith(("lora_A", "lora_B")) or k.startswith("frame_adapter.") for k in adapter)
    # the peft layout: the same tensors under peft's names
    peft = load_file(str(exp / "adapter" / "peft" / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.") for k in peft)
    assert any(k.endswith(".q_proj.lora_A.weight") for k in peft)
    back = read_peft(exp / "adapter" / "peft")
    assert back.keys() == adapter.keys() and all(torch.equal(back[k], adapter[k]) for k in adapter)
    config = json.loads((exp / "adapter" / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["modules_to_save"] == ["frame_adapter"] and config["r"] == 16
    # a shared task dir (no checkpoints) decodes exactly like the whole model
    shared = tmp_path / "shared"
    result = runner.invoke(app, ["export-adapter", str(exp), "--out", str(shared)])
    assert result.exit_code == 0 and "of" in result.output, result.output
    assert not (shared / "checkpoints").exists() and (shared / "config.yaml").is_file()
    src = DataDirOf(models["corpus"] / "mini_vc_test")
    fast = {"stage1": {"steps": 2}, "s2a": {"steps": [2, 1]}}
    # (unwatermarked: the payload names the model dir, and these two are named apart)
    whole = Metis.from_dirs(exp, watermark=False).vc(src["src"], ref=src["ref"], seed=1, **fast)
    small = Metis.from_dirs(shared, watermark=False).vc(src["src"], ref=src["ref"], seed=1, **fast)
    assert np.array_equal(whole.wav, small.wav)
    # another base than the one the adapter was made from is refused
    info = json.loads((shared / "adapter" / "adapter.json").read_text())
    base = tmp_path / "base"
    shutil.copytree(info["base"]["checkpoint"], base)
    info["base"]["checkpoint"] = str(base)
    (shared / "adapter" / "adapter.json").write_text(json.dumps(info))
    weights = load_file(str(base / info["base"]["weights"]))
    next(iter(weights.values())).add_(1.0)
    from safetensors.torch import save_file

    save_file(weights, str(base / info["base"]["weights"]))
    with pytest.raises(MetisError, match="is not the pre-trained model this adapter was made from"):
        Metis.from_dirs(shared)


def DataDirOf(path):
    """The first utterance's src.scp and ref.scp entries of a VC data dir."""
    from metis_cli.data.datadir import DataDir

    data = DataDir(path)
    utt = data.utt_ids()[0]
    return {"src": data.read("src.scp")[utt], "ref": data.read("ref.scp")[utt]}


def test_the_phone_ctc_loss_rewards_the_right_phones_and_tts_trains_with_it(models, tmp_path):
    """text.ctc_weight > 0: the model gets a phone CTC head, training logs the CTC loss beside the loss, the
    validation cross-entropy stays the masked tokens' alone, and decoding loads the model."""
    from metis_cli.train.finetune import phone_ctc_loss

    phones = torch.tensor([[3, 5, 0], [2, 0, 0]])
    valid = torch.ones(2, 6, dtype=torch.bool)
    right = torch.full((2, 6, 8), -5.0)
    for row, frames in ((0, [3, 3, 0, 5, 5, 5]), (1, [2, 2, 2, 0, 0, 0])):
        for frame, phone in enumerate(frames):
            right[row, frame, phone] = 5.0
    uniform = torch.zeros(2, 6, 8)
    assert float(phone_ctc_loss(right, valid, phones)) < 0.1 < float(phone_ctc_loss(uniform, valid, phones))

    exp = tmp_path / "tts_ctc"
    result = finetune(models, "tts", exp, "text.ctc_weight=0.5", "train.log_every=1")
    assert result.exit_code == 0, result.output
    config = load_config(exp / "config.yaml")
    assert config["text"]["ctc_weight"] == 0.5 and config["model"]["phone_ctc"] is True
    lines = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    assert all(line["ctc"] > 0 for line in lines if "loss" in line)
    validation = [line for line in lines if "val_ce_bits" in line]
    assert validation and not any("ctc" in key for line in validation for key in line)
    with pytest.raises(MetisError, match="ctc_weight must be 0"):
        from metis_cli.train.finetune import finetune as run_finetune

        config = load_config(REPO / "egs" / "tts" / "conf" / "mini" / "finetune.yaml", ["text.ctc_weight=-1"])
        run_finetune(config, tmp_path / "bad", [models["corpus"] / "mini_train"])


def test_phones_are_placed_on_frames_by_word_timings_and_by_mean_durations(tmp_path):
    """text.frame_phones: each word's phones share its span; between words is silence (0); the fitted mean
    durations place new text on any number of frames and survive a save and load."""
    from metis_cli.text.frame_phones import SILENCE, PhoneDurations, phones_by_word, place_by_words
    from metis_cli.text.phonemize import make_phonemizer

    # phonemised whole, espeak joins "a" to "warm"; word by word, every word of the timings has its phones
    words = phones_by_word("A warm breeze, of the sea.", make_phonemizer("espeak", "en"))
    assert len(words) == 6 and words[1] == ["w", "ɔːɹ", "m"] and words[5] == ["s", "iː"]  # no stress, no "."
    groups = [[1, 2, 3, 4], [5, 6, 3, 7]]
    placed = place_by_words(groups, [(0.1, 0.26), (0.4, 0.56)], 35, 50.0)
    assert placed.tolist() == [0] * 5 + [1, 1, 2, 2, 3, 3, 4, 4] + [0] * 7 + [5, 5, 6, 6, 3, 3, 7, 7] + [0] * 7
    # word counts that disagree (a number read out, say): every phone shares the speech span
    fallback = place_by_words(groups, [(0.1, 0.26)], 20, 50.0)
    assert fallback[5:13].tolist() == [1, 2, 3, 4, 5, 6, 3, 7] and set(fallback[13:].tolist()) == {SILENCE}

    durations = PhoneDurations.fit([(placed, 2)])
    assert durations.phone_frames[3] == 2.0 and durations.lead_frames == 5 and durations.pause_frames == 7
    assert durations.tail_frames == 7 and durations.default_frames == 2.0
    again = durations.place(groups, 35)
    assert again.tolist() == placed.tolist()  # the same words on the same number of frames: the same layout
    stretched = durations.place(groups, 70)
    assert len(stretched) == 70 and (stretched == 1).sum() == 4 and stretched[0] == SILENCE
    durations.save(tmp_path / "durations.json")
    assert PhoneDurations.load(tmp_path / "durations.json") == durations
    with pytest.raises(MetisError, match="needs its durations"):
        PhoneDurations.load(tmp_path / "missing.json")


@pytest.mark.parametrize("layout", ["words", "durations"])
def test_tts_with_frame_phones_trains_validates_and_decodes(models, layout, tmp_path):
    """text.frame_phones: the frame adapter takes one-hot phones (as many dims as the phone vocabulary), the
    mean durations are saved, validation of a model trained on word timings also reads the phones placed as
    decoding places them, and a decode uses them."""
    exp = tmp_path / "tts_frames"
    result = finetune(models, "tts", exp, f"text.frame_phones={layout}", config="finetune.yaml")
    assert result.exit_code == 0, result.output
    config = load_config(exp / "config.yaml")
    assert config["text"]["frame_phones"] == layout
    n_phones = len((exp / "phones.txt").read_text().splitlines())
    assert config["model"]["frame_condition_dim"] == config["model"]["n_phones"] == n_phones
    durations = json.loads((exp / "phone_durations.json").read_text())
    assert durations["default_frames"] > 1 and durations["phone_frames"]
    val = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if "val_ce_bits" in line]
    assert "val_ce_bits_shuffled_text" in val[-1] and ("val_ce_bits_durations" in val[-1]) == (layout == "words")
    out = tmp_path / "decode"
    data = tts_set(models["corpus"], tmp_path / "tts_set")
    opts = ["--s2a", str(models["s2a"]), "--codec", str(models["codec"]), "--stage1-opt", "steps=2"]
    result = runner.invoke(app, ["decode", str(data), "--task", "tts", "--model", str(exp), "--out", str(out), *opts])
    assert result.exit_code == 0, result.output
    assert len(list((out / "wav").glob("*.wav"))) == 6
    # the config's decoding section (finetune.yaml: no guidance, measured best at mini scale) under --stage1-opt
    settings = json.loads((out / "decode.json").read_text())["stage1_settings"]
    assert config["decoding"] == {"cfg_scale": 0.0} and settings["cfg_scale"] == 0.0 and settings["steps"] == 2
    if layout == "words":  # the oracle: placed by the data's word timings, as long as the recordings
        import soundfile as sf

        from metis_cli.data.datadir import DataDir, format_ctm, read_ctm

        train, test = DataDir(models["corpus"] / "mini_train"), DataDir(data)
        utts = test.utt_ids()
        (data / "words.ctm").write_text(format_ctm({u: read_ctm(train.file("words.ctm"))[u] for u in utts}))
        test.write("utt2dur", {u: train.read("utt2dur")[u] for u in utts})
        oracle = tmp_path / "oracle"
        args = ["decode", str(data), "--task", "tts", "--out", str(oracle), "--word-timings", *opts]
        result = runner.invoke(app, [*args, "--model", str(exp)])
        assert result.exit_code == 0, result.output
        assert json.loads((oracle / "decode.json").read_text())["word_timings"] is True
        seconds = float(test.read("utt2dur")[utts[0]])
        assert sf.info(oracle / "wav" / f"{utts[0]}.wav").frames == int(round(seconds * 50)) * 320
        prefix_only = tmp_path / "prefix_only"  # the published layout, finetune_prefix.yaml: no placement
        assert finetune(models, "tts", prefix_only, config="finetune_prefix.yaml").exit_code == 0
        assert "frame_phones: false" in (prefix_only / "config.yaml").read_text()
        args[args.index(str(oracle))] = str(tmp_path / "oracle_prefix_only")
        result = runner.invoke(app, [*args, "--model", str(prefix_only)])
        assert result.exit_code != 0 and "fine-tuned with text.frame_phones" in result.output
    with pytest.raises(MetisError, match="frame_phones is a TTS option"):
        from metis_cli.train.finetune import finetune as run_finetune

        config = load_config(REPO / "egs" / "tts" / "conf" / "mini" / "finetune.yaml", ["task=vc"])
        run_finetune(config, tmp_path / "bad", [models["corpus"] / "mini_train"])
    result = finetune(models, "tts", tmp_path / "bad2", "text.frame_phones=frames", config="finetune.yaml")
    assert result.exit_code != 0 and "text.frame_phones is false, words or durations, not 'frames'" in result.output
    for i, (override, error) in enumerate(
        [
            ("decoding={steps: 0}", "decoding: mask-predict needs at least 1 step, got 0"),
            ("decoding={guidance: 2}", "decoding: unknown key(s) guidance; known: cfg_rescale, cfg_scale, steps"),
            ("decoding={cfg_scale: high}", "decoding.cfg_scale: give a number, not 'high'"),
        ]
    ):
        bad = tmp_path / f"bad_decoding{i}"
        result = finetune(models, "tts", bad, override, config="finetune.yaml")
        assert result.exit_code != 0 and error in result.output and not (bad / "checkpoints").exists()
