"""The recipes end to end on the tiny corpus: egs/tts/run.sh through every stage, then egs/{se,vc,tse}/run.sh
reusing the shared stages; option handling and stage-order errors; shellcheck on every shell script."""

import json
import os
import shutil
import subprocess

import pytest
from conftest import REPO

from metis_cli.data.arrays import ArrayStore

RUN = REPO / "egs" / "tts" / "run.sh"
FINETUNE = "train.max_steps=2 train.val_every=100 train.ckpt_every=100 data.val_utterances=2"
DECODE = "--stage1-opt steps=2 --s2a-opt steps=[2,1]"


def run(*args):
    return subprocess.run(["bash", str(RUN), *map(str, args)], capture_output=True, text=True, cwd=REPO)


def test_help_lists_stages():
    result = run("--help")
    assert (
        result.returncode == 0
        and "0 data" in result.stdout
        and "2 tokenize" in result.stdout
        and "7 score" in result.stdout
    )
    assert "5 finetune" in result.stdout and "6 decode" in result.stdout
    assert (
        "  --stop-stage 100" in result.stdout
        and "  --ngpu 0" in result.stdout
        and "  --data-dir $root/data/mini" in result.stdout
    )
    options = result.stdout.split("Options")[1].splitlines()[1:]
    assert '  --finetune-config ""' in result.stdout and '  --finetune-data ""' in result.stdout
    assert "egs/<task>/conf/<name of config_dir>/finetune.yaml" in result.stdout
    assert '  --s2a-overrides ""' in result.stdout and all(line.startswith("  --") for line in options if line.strip())


def recipe(task, *args):
    return subprocess.run(
        ["bash", str(REPO / "egs" / task / "run.sh"), *map(str, args)], capture_output=True, text=True, cwd=REPO
    )


def test_a_fine_tuned_model_is_reused_only_for_the_data_it_was_made_from(tmp_path):
    """Stage 5's marker names the pre-trained model and --finetune-data; an older marker (the pre-trained model
    only) stands for the train set; a model made from other data stops the recipe instead of being reused."""
    data, pretrain, tuned = tmp_path / "data", tmp_path / "pretrain", tmp_path / "vc_tuned"
    for name in ("mini_train", "mini_dev", "mini_test", "mini_vc_test", "other"):
        (data / name).mkdir(parents=True)
    pretrain.mkdir()
    (pretrain / ".done").write_text("tokens data\n")
    tuned.mkdir()
    stage5 = [
        "--stage",
        5,
        "--stop-stage",
        5,
        "--data-dir",
        data,
        "--pretrain-dir",
        pretrain,
        "--exp-dir",
        tmp_path / "exp",
    ]
    common = [*stage5, "--finetune-dir", tuned]
    (tuned / ".done").write_text(f"{pretrain}\n")  # written before --finetune-data existed
    assert recipe("vc", *common).returncode == 0
    (tuned / ".done").write_text(f"{pretrain} {data / 'mini_train'}\n")
    result = recipe("vc", *common)
    assert result.returncode == 0 and f"on {data / 'mini_train'} in {tuned}" in result.stderr
    result = recipe("vc", *common, "--finetune-data", data / "other")
    message = f"{tuned} was fine-tuned from {pretrain} {data / 'mini_train'}, not {pretrain} {data / 'other'}"
    assert result.returncode == 1 and message in result.stderr
    (pretrain / ".done").write_text("tokens data\n")  # trained again since
    result = recipe("vc", *common)
    assert result.returncode == 1 and f"{tuned} was fine-tuned before {pretrain} was trained again" in result.stderr
    (tuned / ".done").write_text(f"{pretrain} {data / 'mini_train'}\n")
    result = recipe("vc", *common, "--finetune-data", data / "missing")
    assert result.returncode == 1 and f"--finetune-data {data / 'missing'} does not exist" in result.stderr
    # TTS reads the pre-training set by default (its transcripts: the large corpus for the default size)
    result = recipe("tts", *stage5)
    assert result.returncode == 1 and f"--finetune-data {data}_large/mini_train does not exist" in result.stderr
    result = recipe("tts", *stage5, "--pretrain-data", data / "other")
    assert f"on {data / 'other'} in {tmp_path / 'exp' / 'tts_mini'}" in result.stderr  # (then fails: no real model)


def test_the_phonetic_front_end_learns_from_the_pretraining_set_and_is_reused_only_for_it(tmp_path):
    """Stage 1 trains the front end on --phonetic-data (default --pretrain-data: the large corpus); its marker
    names that set, a front end from before the marker stands for the train set, and one made from other data
    stops the recipe; the default dir is named after the corpus when it is not --data-dir's."""
    data, front_end = tmp_path / "data", tmp_path / "ph"
    for name in ("mini_train", "mini_dev", "mini_vc_test"):
        (data / name).mkdir(parents=True)
    stage1 = ["--stage", 1, "--stop-stage", 1, "--data-dir", data, "--phonetic-dir", front_end]
    result = recipe("vc", *stage1)
    message = f"--phonetic-data {data}_large/mini_train does not exist: run stage 0 first"
    assert result.returncode == 1 and message in result.stderr
    result = recipe("vc", *stage1, "--phonetic-data", data / "mini_train")
    assert result.returncode == 1 and f"{data / 'mini_train'} has no phones.ctm" in result.stderr
    (front_end / "model").mkdir(parents=True)
    (front_end / "model" / "phonetic.json").write_text("{}")  # trained before the marker: on the train set
    result = recipe("vc", *stage1)
    message = f"{front_end} was trained on {data / 'mini_train'}, not {data}_large/mini_train; move it away"
    assert result.returncode == 1 and message in result.stderr
    (front_end / ".done").write_text(f"{data}_large/mini_train\n")
    result = recipe("vc", *stage1)  # reused: on to the features (which this empty model cannot make)
    assert "trained on" not in result.stderr and f"phonetic features in {data}/ssl/ph" in result.stderr
    stage2 = ["--stage", 2, "--stop-stage", 2, "--data-dir", data]
    result = recipe("vc", *stage2, "--phonetic-data", data / "mini_train")  # from --data-dir: the old name
    assert result.returncode == 1 and "ssl/phonetic_mini/mini_train is missing: run stage 1 first" in result.stderr


def test_a_stage_before_its_inputs_says_which_stage_to_run(tmp_path):
    data = tmp_path / "data"
    result = recipe("vc", "--stage", 6, "--data-dir", data, "--exp-dir", tmp_path)
    assert result.returncode == 1 and f"{data}/mini_train does not exist: run stage 0 first" in result.stderr
    for name in ("mini_train", "mini_dev", "mini_vc_test"):
        (data / name).mkdir(parents=True)
    result = recipe("vc", "--stage", 6, "--data-dir", data, "--exp-dir", tmp_path)
    assert result.returncode == 1 and "vc_mini is not fine-tuned: run stage 5 first" in result.stderr
    result = recipe("vc", "--stage", 5, "--data-dir", data, "--pretrain-dir", tmp_path / "none")
    assert result.returncode == 1 and "none is not trained: run stage 4 first" in result.stderr
    result = recipe("vc", "--stage", 4, "--stop-stage", 4, "--data-dir", data)  # the large corpus by default
    message = f"--pretrain-data {data}_large/mini_train does not exist: run stage 0"
    assert result.returncode == 1 and message in result.stderr
    result = recipe("vc", "--stage", 2, "--stop_stage", 2, "--data-dir", data)
    message = "ssl/phonetic_mini_large/mini_train is missing: run stage 1 first"  # the large corpus's front end
    assert result.returncode == 1 and message in result.stderr
    result = recipe("vc", "--task", "l2x")
    assert result.returncode == 1 and "--task l2x: egs/vc/run.sh runs vc; run egs/l2x/run.sh" in result.stderr
    result = recipe("vc", "--ngpu", "two")
    assert result.returncode == 1 and "--ngpu must be a number of GPUs" in result.stderr
    result = recipe("vc", "--stage", 3, "--stop-stage", 3, "--data-dir", data, "--codec-config", "codec_nope.yaml")
    assert (
        result.returncode == 1 and f"--codec-config codec_nope.yaml: no such file in {REPO}/conf/mini" in result.stderr
    )
    result = recipe("vc", "--stage", 4, "--stop-stage", 4, "--data-dir", data, "--s2a-config", "s2a_nope.yaml")
    assert result.returncode == 1 and f"--s2a-config s2a_nope.yaml: no such file in {REPO}/conf/mini" in result.stderr
    result = recipe(
        "vc",
        "--stage",
        3,
        "--stop-stage",
        3,
        "--data-dir",
        data,
        "--codec-config",
        "codec_neural.yaml",
        "--codec-dir",
        tmp_path / "c",
    )
    assert result.returncode == 1 and f"conf/mini/codec_neural.yaml in {tmp_path / 'c'}" in result.stderr
    # the codec learns from the pre-training set by default: the large corpus, which stage 0 builds
    assert f"--codec-data {data}_large/mini_train does not exist: run stage 0 first" in result.stderr
    result = recipe("vc", "--tokenizer", "hubert")
    assert result.returncode == 1 and "unknown --tokenizer hubert: choose kmeans or vq" in result.stderr
    for name in ("mini_train", "mini_dev"):  # stage 1's outputs, so that stage 2 gets to its tokenizer
        (data / "ssl" / "phonetic_mini_large" / name).mkdir(parents=True)
        (data / "ssl" / "phonetic_mini_large" / name / ".done").touch()
    result = recipe(
        "vc",
        "--stage",
        2,
        "--stop-stage",
        2,
        "--data-dir",
        data,
        "--tokenizer",
        "vq",
        "--tokenizer-dir",
        tmp_path / "vq",
    )
    assert (
        result.returncode == 1
        and f"--tokenizer-dir {tmp_path / 'vq'} holds no VQ tokenizer; one to train must be <exp>/tokenizer"
        in result.stderr
    )
    result = recipe("l2s", "--mini-size", "large", "--data-dir", data)
    assert result.returncode == 1 and "--mini-size large has no mouth videos" in result.stderr
    (data / "mini_test").mkdir()  # the sets exist, but without video.scp (a corpus prepared without videos)
    result = recipe("l2s", "--stage", 5, "--data-dir", data)
    assert (
        result.returncode == 1
        and f"{data}/mini_train has no video.scp (nor visual feats.scp): lip-to-speech needs mouth videos"
        in result.stderr
    )
    result = recipe(
        "l2s", "--stage", 5, "--stop-stage", 4, "--data-dir", data
    )  # no stage to run: refused before any check
    assert result.returncode == 1 and "--stop-stage 4 is before --stage 5: nothing would run" in result.stderr


def test_corpus_file_names_the_data_and_a_missing_corpus_dir_fails(tmp_path):
    for task, test_set in (
        ("tts", "mini_test"),
        ("vc", "mini_vc_test"),
        ("se", "mini_se_test"),
        ("tse", "mini_tse_test"),
        ("l2s", "mini_test"),
    ):
        conf = (REPO / "egs" / task / "corpus.conf").read_text()
        assert "corpus=mini\n" in conf and f"test_set={test_set}\n" in conf
    result = recipe(
        "tts",
        "--corpus",
        "libritts",
        "--data-dir",
        tmp_path / "libritts",
        "--stop-stage",
        0,
        "--exp-dir",
        tmp_path / "exp",
    )
    assert result.returncode == 1 and "--corpus libritts needs --corpus-dir" in result.stderr


def test_shellcheck_passes_on_every_shell_script():
    scripts = subprocess.run(
        ["git", "ls-files", "*.sh", "*/run", "**/run.sh"], capture_output=True, text=True, cwd=REPO
    ).stdout.split()
    assert "utils/recipe_lib.sh" in scripts and "egs/tse/run.sh" in scripts and ".ci/run" in scripts
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: bash tools/install.sh --test true installs it"
    result = subprocess.run([shellcheck, "-x", *sorted(set(scripts))], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


def test_unknown_option_fails():
    result = run("--bogus", "1")
    assert result.returncode == 1 and "unknown option --bogus" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "99"], "--stage '99': give a stage number in 0..7"),
        (["--stage", "abc"], "--stage 'abc': give a stage number in 0..7"),
        (["--stage", "-1"], "--stage '-1': give a stage number in 0..7"),
        (["--stop-stage", "x"], "--stop-stage 'x': give a stage number in 0..7"),
        (["--stage", "5", "--stop-stage", "3"], "--stop-stage 3 is before --stage 5: nothing would run"),
        (["--nj", "0"], "--nj '0': give a number of parallel jobs, 1 or more"),
    ],
)
def test_stages_and_jobs_out_of_range_are_refused(args, message):
    result = run(*args)
    assert result.returncode == 1 and message in result.stderr and "Stage" not in result.stderr


def test_trailing_option_without_value_fails():
    result = run("--stage")
    assert result.returncode == 1 and "option --stage needs a value" in result.stderr


@pytest.mark.slow
def test_stage0_builds_validates_and_is_idempotent(tmp_path):
    mini_dir = tmp_path / "mini"
    result = run("--data-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0, "--exp-dir", tmp_path / "exp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (mini_dir / ".done").is_file() and (mini_dir / "validate.json").is_file()
    assert "Stage 0: data" in result.stderr
    assert sorted(p.name for p in mini_dir.glob("mini_*")) == [
        "mini_dev",
        "mini_se_dev",
        "mini_se_test",
        "mini_test",
        "mini_train",
        "mini_tse_dev",
        "mini_tse_test",
        "mini_vc_dev",
        "mini_vc_test",
    ]
    again = run("--data-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0, "--exp-dir", tmp_path / "exp")
    assert again.returncode == 0 and "already built and validated, skipping" in again.stderr
    assert "synthesising" not in again.stderr
    # Only lip-to-speech needs the mouth videos: its stage 0 adds them, leaving the speech as it was.
    assert not list(mini_dir.glob("*/video.scp")) and "mouth videos not rendered" in result.stderr
    wavs = {p: p.stat().st_mtime_ns for p in mini_dir.glob("wav/spk*/*.wav")}
    stage0 = ("--data-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0, "--exp-dir", tmp_path / "l2s")
    result = recipe("l2s", *stage0)
    assert result.returncode == 0 and "rendering mouth videos" in result.stderr, result.stderr[-3000:]
    assert sorted(p.parent.name for p in mini_dir.glob("*/video.scp")) == ["mini_dev", "mini_test", "mini_train"]
    assert {p: p.stat().st_mtime_ns for p in mini_dir.glob("wav/spk*/*.wav")} == wavs
    assert "already built and validated, skipping" in recipe("l2s", *stage0).stderr


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory):
    """The tts recipe, stages 0-7, on the tiny corpus with tiny models and a few steps per trainer."""
    tmp_path = tmp_path_factory.mktemp("recipe")
    mini_dir, exp_dir = tmp_path / "mini", tmp_path / "exp"
    # the WORLD codec, small
    codec = "model.quantizer.codebook_size=32 model.quantizer.kmeans_iters=5 data.val_utterances=2"
    small = (
        "train.max_steps=2 train.val_every=100 train.ckpt_every=100 model.transformer.dim=32 "
        "model.transformer.n_layers=1 "
        "model.transformer.n_heads=2 model.transformer.ffn_dim=64"
    )
    shared = [
        "--data-dir",
        mini_dir,
        "--mini-size",
        "tiny",
        "--n-clusters",  # the tiny train set has too few frames for the default 1024
        128,
        "--phonetic-dir",
        tmp_path / "phonetic",
        "--codec-dir",
        tmp_path / "codec",
        "--codec-data",  # not --pretrain-data (the default): its few tiny utterances make a poor codec
        mini_dir / "mini_train",
        "--pretrain-dir",
        tmp_path / "pretrain",
        "--pretrain-data",  # another set than the train set, as the large corpus is for the default size
        mini_dir / "mini_dev",
        "--finetune-data",  # tts would read --pretrain-data, whose 6 tiny texts lack phones of the test set
        mini_dir / "mini_train",
        "--s2a-dir",
        tmp_path / "s2a",
        "--finetune-overrides",
        FINETUNE,
        "--decode-opts",
        DECODE,
    ]
    result = run(
        *shared,
        "--exp-dir",
        exp_dir,
        "--score-opts",
        "--report-utts 2",
        "--phonetic-overrides",
        "train.max_steps=3 model.dim=16 model.n_layers=1 model.bottleneck_dim=8 data.speed_perturb=[1.0]",
        "--codec-overrides",
        codec,
        "--pretrain-overrides",
        small,
        "--s2a-overrides",
        small,
        "--resynth-opts",
        "--s2a-opt steps=[2,1] --stage1-opt steps=2",
    )
    return tmp_path, shared, result


@pytest.mark.slow
def test_main_job_on_the_tiny_corpus_scores_the_ground_truth(tts_run):
    tmp_path, shared, result = tts_run
    mini_dir, exp_dir = tmp_path / "mini", tmp_path / "exp"
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((exp_dir / "ground_truth" / "decode_mini_test" / "scores" / "summary.json").read_text())
    assert summary["counts"]["scored"] == 6 and summary["metrics"]["sim"]["mean"] > 0.8
    tts = json.loads((exp_dir / "tts_mini" / "decode_mini_test" / "scores" / "summary.json").read_text())
    assert tts["task"] == "tts" and tts["counts"]["scored"] + tts["counts"]["failed"] == 6
    # TTS fine-tuned on --finetune-data, and its marker says so
    assert (exp_dir / "tts_mini" / ".done").read_text().split() == [
        str(tmp_path / "pretrain"),
        str(mini_dir / "mini_train"),
    ]
    assert f"--train-data {mini_dir / 'mini_train'} " in (exp_dir / "tts_mini" / "command.txt").read_text()
    assert "frame_phones: words" in (exp_dir / "tts_mini" / "config.yaml").read_text()  # the mini default
    # stage 1 trained the phonetic front end (--phonetic-overrides: 8 dims) and extracted its features
    assert json.loads((tmp_path / "phonetic" / "model" / "phonetic.json").read_text())["dim"] == 8
    assert (tmp_path / "phonetic" / ".done").read_text().strip() == str(mini_dir / "mini_dev")  # --pretrain-data
    for name in ("mini_train", "mini_dev", "mini_test"):
        assert (mini_dir / "ssl" / "phonetic" / name / ".done").is_file()
        assert (mini_dir / name / "ssl_tokens" / "text.km").is_file()
    resynth = json.loads((exp_dir / "codec_resynth" / "decode_mini_test" / "scores" / "summary.json").read_text())
    # The parametric codec speaks even with 16 x 32 codes learned from the 12 tiny training utterances.
    assert (
        resynth["task"] == "resynth" and resynth["counts"]["scored"] == 6 and resynth["metrics"]["stoi"]["mean"] > 0.8
    )
    # resynthesis has the original as its reference: the intrusive metrics, no DNSMOS
    assert {"wer", "pesq_wb", "mcd", "sim_other"} <= set(resynth["metrics"])
    assert not [m for m in resynth["metrics"] if m.startswith("dnsmos")]
    assert json.loads((mini_dir / "mini_test" / "acoustic_codes" / "meta.json").read_text())["codec_kind"] == "world"
    assert ArrayStore(mini_dir / "mini_test" / "acoustic_codes")
    for name, task in (("s2a_resynth", "resynth"), ("pretrain_generate", "generate")):
        summary = json.loads((exp_dir / name / "decode_mini_test" / "scores" / "summary.json").read_text())
        assert summary["task"] == task and summary["counts"]["scored"] + summary["counts"]["failed"] == 6
    assert sorted(summary["metrics"]) == ["sim", "sim_other"]  # the continuation: only its voice is scored
    # stage-1 pre-training read --pretrain-data, and its marker says so
    tokens_of = (mini_dir / "mini_dev" / "ssl_tokens" / ".done").read_text().strip()  # the tokenizer@its weights
    assert tokens_of.startswith(f"{mini_dir / 'kmeans' / 'phonetic_k128'}@")
    assert (tmp_path / "pretrain" / ".done").read_text().split() == [tokens_of, str(mini_dir / "mini_dev")]
    assert f"--train-data {mini_dir / 'mini_dev'} " in (tmp_path / "pretrain" / "command.txt").read_text()
    assert (tmp_path / "codec" / ".done").read_text().strip() == str(mini_dir / "mini_train")
    quality = json.loads((mini_dir / "kmeans" / "phonetic_k128" / "quality_mini_dev.json").read_text())
    assert quality["n_clusters"] == 128 and quality["pnmi"] > 0.3
    assert "scores: mean" in result.stdout
    # Every stage is timed under the command that ran it, and RESULTS.md shows both.
    times = [line.split("\t") for line in (exp_dir / "stage_times.tsv").read_text().splitlines()]
    assert [(t[0], t[1]) for t in times] == [
        ("0", "data"),
        ("1", "ssl"),
        ("2", "tokenize"),
        ("3", "codec"),
        ("4", "pretrain"),
        ("5", "finetune"),
        ("6", "decode"),
        ("7", "score"),
    ]
    assert all(t[4].startswith("bash egs/tts/run.sh --data-dir ") and int(t[2]) >= 0 for t in times)
    results = (exp_dir / "RESULTS.md").read_text()
    assert "## tts: mini_test" in results and "## Recipe stages" in results and "| 4 | pretrain |" in results
    # one page comparing every decode dir the recipe scored, inside its exp dir
    compare = (exp_dir / "compare.html").read_text()
    assert "systems compared" in compare and compare.count("<h3>") > 0 and (exp_dir / "compare_files").is_dir()


@pytest.mark.slow
def test_a_rerun_skips_finished_stages_and_redoes_a_half_written_one(tts_run):
    tmp_path, shared, _ = tts_run
    mini_dir, exp_dir = tmp_path / "mini", tmp_path / "exp"
    codec_ckpts = sorted((tmp_path / "codec" / "checkpoints").iterdir())
    stamps = [p.stat().st_mtime_ns for p in codec_ckpts]
    # A tokenize stage killed halfway: its marker never written, one file cut short.
    tokens = mini_dir / "mini_dev" / "ssl_tokens"
    (tokens / ".done").unlink()
    victim = next(p for p in sorted(tokens.iterdir()) if p.is_file() and p.stat().st_size > 0)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    result = run(*shared, "--exp-dir", exp_dir, "--stage", 2, "--stop-stage", 5)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tokens / ".done").read_text().strip().startswith(f"{mini_dir / 'kmeans' / 'phonetic_k128'}@")
    assert len(ArrayStore(tokens)) == len((mini_dir / "mini_dev" / "utt2spk").read_text().splitlines())
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "codec" / "checkpoints").iterdir())] == stamps
    assert "Stage 5: finetune" in result.stderr
    # without the fixture's --pretrain-overrides the config says 2000 steps: the finished model is kept, with a word
    warning = f"WARNING: {tmp_path / 'pretrain'} is kept as trained, with another config than {REPO}/conf/mini/"
    assert warning in result.stderr and "train.max_steps: 2 -> 2000" in result.stderr
    assert f"{exp_dir / 'tts_mini'} is kept" not in result.stderr  # the same --finetune-overrides: no word


@pytest.mark.slow
@pytest.mark.parametrize(
    "task,test_set", [("se", "mini_se_test"), ("vc", "mini_vc_test"), ("tse", "mini_tse_test"), ("l2s", "mini_test")]
)
def test_task_recipe_reuses_the_shared_stages(tts_run, task, test_set):
    """Each task recipe after the tts one: only stages 5-7 do work (0-4 find their outputs)."""
    tmp_path, shared, _ = tts_run
    exp_dir = tmp_path / f"{task}_exp"
    shared_files = sorted(
        p for name in ("codec", "pretrain", "s2a") for p in (tmp_path / name).rglob("*") if p.is_file()
    )
    stamps = [p.stat().st_mtime_ns for p in shared_files]
    result = recipe(task, *shared, "--exp-dir", exp_dir, "--score-opts", "--report-utts 2 --metrics wer,sim,pesq")
    assert result.returncode == 0, result.stderr[-3000:]
    # The floor: the unprocessed input, or for l2s the same model with the video shuffled in time.
    floor = "l2s_mini_shuffled_video" if task == "l2s" else "input"
    for name in (f"{task}_mini", floor, "ground_truth"):
        summary = json.loads((exp_dir / name / f"decode_{test_set}" / "scores" / "summary.json").read_text())
        assert summary["task"] == task and summary["counts"]["scored"] + summary["counts"]["failed"] == 6
    if task == "l2s":  # and the ceiling: the codec's resynthesis of the test set
        assert (exp_dir / "codec_resynth" / f"decode_{test_set}" / "scores" / "summary.json").is_file()
    assert "## Recipe stages" in (exp_dir / "RESULTS.md").read_text()
    assert f"## {task}: {test_set}" in (exp_dir / "RESULTS.md").read_text()
    # stage 0 found the corpus built (l2s: and added its mouth videos, which the tts recipe did not render)
    assert ("rendering mouth videos" if task == "l2s" else "already built and validated, skipping") in result.stderr
    assert [p.stat().st_mtime_ns for p in shared_files] == stamps
    times = {
        line.split("\t")[1]: int(line.split("\t")[2]) for line in (exp_dir / "stage_times.tsv").read_text().splitlines()
    }
    assert list(times) == ["data", "ssl", "tokenize", "codec", "pretrain", "finetune", "decode", "score"]


@pytest.mark.slow
def test_omni_recipe_decodes_every_task_and_compares_with_the_single_task_models(tts_run):
    """After the task recipes above: Omni on each task's test set, text-guided TSE, and one results table
    beside the single-task models' decodes of the same sets."""
    tmp_path, shared, _ = tts_run
    exp_dir = tmp_path / "omni_exp"
    from metis_cli.data.datadir import DataDir

    # Text-guided TSE needs words whose phones the 12 tiny training sentences cover.
    tse, known = (
        DataDir(tmp_path / "mini" / "mini_tse_test"),
        sorted(DataDir(tmp_path / "mini" / "mini_train").read("text").values()),
    )
    for name in ("text", "prompt_text"):
        tse.write(name, {u: known[i % len(known)] for i, u in enumerate(tse.utt_ids())})
    result = recipe(
        "omni",
        *shared,
        "--exp-dir",
        exp_dir,
        "--score-opts",
        "--report-utts 2 --metrics wer,sim,pesq",
        "--compare-exp-dir",
        tmp_path / "TASK_exp",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    decodes = {
        "tts": "mini_test",
        "vc": "mini_vc_test",
        "se": "mini_se_test",
        "tse": "mini_tse_test",
        "tse_text": "mini_tse_test",
    }
    for name, test_set in decodes.items():
        summary = json.loads(
            (exp_dir / "omni_mini" / f"decode_{name}_{test_set}" / "scores" / "summary.json").read_text()
        )
        assert summary["task"] == name.split("_")[0] and summary["counts"]["scored"] + summary["counts"]["failed"] == 6
    info = json.loads((exp_dir / "omni_mini" / "decode_tse_text_mini_tse_test" / "decode.json").read_text())
    assert info["text_guided"] and info["model_task"] == "omni"
    results = (exp_dir / "RESULTS.md").read_text()
    assert "omni_mini/decode_tse_text_mini_tse_test" in results and "input/decode_mini_se_test" in results
    for task in ("se", "vc", "tse"):  # their recipes ran before this test (when it runs alone, they are missing)
        if (tmp_path / f"{task}_exp" / f"{task}_mini").is_dir():
            assert f"{task}_exp/{task}_mini/decode_" in results


@pytest.mark.slow
def test_vq_tokenizer_stage_on_a_copy_of_the_tiny_corpus(tts_run, tmp_path):
    """--tokenizer vq: stage 2 trains a VQ tokenizer with --n-clusters codes, tokenizes every set with it, and a
    rerun finds it trained; the data dir is a copy, so the other tests keep their k-means tokens."""
    mini_dir = tmp_path / "mini"
    shutil.copytree(tts_run[0] / "mini", mini_dir, symlinks=True)
    args = [
        "--data-dir",
        mini_dir,
        "--mini-size",  # the tiny corpus pre-trains on its own train set (no large corpus to tokenize)
        "tiny",
        "--stage",
        2,
        "--stop-stage",
        2,
        "--exp-dir",
        tmp_path / "exp",
        "--phonetic-dir",
        tts_run[0] / "phonetic",
        "--tokenizer",
        "vq",
        "--n-clusters",
        16,
        "--vq-overrides",
        "train.max_steps=3 train.val_every=100 train.ckpt_every=100 data.val_utterances=2",
    ]
    result = run(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    tokenizer_dir = mini_dir / "vq" / "phonetic_k16" / "tokenizer"
    assert json.loads((tokenizer_dir / "vq.json").read_text())["n_clusters"] == 16
    for name in ("mini_train", "mini_dev", "mini_test"):
        tokens = mini_dir / name / "ssl_tokens"
        assert (tokens / ".done").read_text().strip().startswith(f"{tokenizer_dir}@")
        assert json.loads((tokens / "tokens.json").read_text())["tokenizer"] == "vq"
        store = ArrayStore(tokens)
        assert len(store) == len((mini_dir / name / "utt2spk").read_text().splitlines())
        assert all(0 <= store[u].min() and store[u].max() < 16 for u in store.keys())
    assert json.loads((tokenizer_dir / "quality_mini_dev.json").read_text())["n_clusters"] == 16
    again = run(*args)
    assert again.returncode == 0 and "VQ tokenizer" not in again.stderr


@pytest.mark.slow
def test_a_front_end_made_again_redoes_its_features_tokens_and_stops_at_models_of_the_old(tts_run, tmp_path):
    """Each output names what it was made from: a front end trained again in place (new weights) makes stages 1-2
    extract, learn the k-means and tokenize again, and stage 4 refuses a model trained on the old tokens. Markers
    from before they named it stand for the current inputs when not older than them; a copy keeps the others'."""
    from safetensors.numpy import load_file, save_file

    mini_dir, front_end, pretrain = tmp_path / "mini", tmp_path / "phonetic", tmp_path / "pretrain"
    shutil.copytree(tts_run[0] / "mini", mini_dir, symlinks=True)
    shutil.copytree(tts_run[0] / "phonetic", front_end)
    args = ["--data-dir", mini_dir, "--mini-size", "tiny", "--n-clusters", 128, "--phonetic-dir", front_end]
    args += ["--phonetic-data", tts_run[0] / "mini" / "mini_dev"]  # what the copied front end's marker names
    args += ["--pretrain-data", mini_dir / "mini_dev", "--pretrain-dir", pretrain, "--exp-dir", tmp_path / "exp"]
    feats, tokens = mini_dir / "ssl" / "phonetic", mini_dir / "mini_train" / "ssl_tokens"
    kmeans = mini_dir / "kmeans" / "phonetic_k128" / "kmeans.safetensors"

    def stages_1_2():
        result = run(*args, "--stage", 1, "--stop-stage", 2)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stderr

    log = stages_1_2()  # another front end dir than the fixture's: extracted again
    assert f"{feats / 'mini_train'} was extracted with {tts_run[0] / 'phonetic' / 'model'}@" in log
    assert "learning it again" in log
    made = (feats / "mini_train" / ".made_from").read_text().strip()
    assert made.startswith(f"{front_end / 'model'}@") and len(made.split("@")[1]) == 12
    tokenizer_id = tokens.joinpath(".done").read_text().strip()
    assert tokenizer_id.startswith(f"{kmeans.parent}@")
    stamps = [kmeans.stat().st_mtime_ns, tokens.joinpath("text.km").stat().st_mtime_ns]
    log = stages_1_2()  # all up to date
    assert "it again" not in log and "k-means (128 clusters)" in log
    for marker in mini_dir.glob("ssl/phonetic/*/.made_from"):  # as written before the markers named their inputs
        marker.unlink()
    kmeans.parent.joinpath(".made_from").unlink()
    for name in ("mini_train", "mini_dev", "mini_test"):
        (mini_dir / name / "ssl_tokens" / ".done").write_text(f"{kmeans.parent}\n")
    log = stages_1_2()
    assert "it again" not in log and tokens.joinpath(".done").read_text().strip() == tokenizer_id
    assert [kmeans.stat().st_mtime_ns, tokens.joinpath("text.km").stat().st_mtime_ns] == stamps
    pretrain.mkdir()
    pretrain.joinpath(".done").write_text(f"{tokenizer_id} {mini_dir / 'mini_dev'}\n")

    weights = front_end / "model" / "phonetic.safetensors"  # trained again: other weights, same place
    save_file({k: v + 0.05 for k, v in load_file(weights).items()}, weights)
    log = stages_1_2()
    assert f"{feats / 'mini_test'} was extracted with {made}, not {front_end / 'model'}@" in log
    assert "learning it again" in log and tokens.joinpath(".done").read_text().strip() != tokenizer_id
    assert (feats / "mini_test" / ".done").is_file() and len(ArrayStore(tokens)) == len(
        ArrayStore(feats / "mini_train")
    )
    result = run(*args, "--stage", 4, "--stop-stage", 4)
    message = f"{pretrain} was trained on {tokenizer_id} {mini_dir / 'mini_dev'}, not {kmeans.parent}@"
    assert result.returncode == 1 and message in result.stderr and "move it away" in result.stderr
    pretrain.joinpath(".done").write_text(f"{kmeans.parent} {mini_dir / 'mini_dev'}\n")  # older than the k-means
    os.utime(pretrain / ".done", ns=(stamps[0], stamps[0]))
    result = run(*args, "--stage", 4, "--stop-stage", 4)
    assert (
        result.returncode == 1
        and f"{pretrain} was trained on {kmeans.parent} {mini_dir / 'mini_dev'}, not" in result.stderr
    )
    # the codec trained again: stage 3 encodes and resynthesises again, stage 4 refuses an S2A of the old codes
    codec, s2a, codes = tmp_path / "codec", tmp_path / "s2a", mini_dir / "mini_test" / "acoustic_codes"
    shutil.copytree(tts_run[0] / "codec", codec)
    args += ["--codec-dir", codec, "--codec-data", tts_run[0] / "mini" / "mini_train", "--s2a-dir", s2a]
    stage3 = [*args, "--stage", 3, "--stop-stage", 3]
    assert run(*stage3).returncode == 0 and (codes / ".done").read_text().strip() == str(codec)
    resynth = tmp_path / "exp" / "codec_resynth" / "decode_mini_test" / "decode.json"
    before = [(codes / ".done").stat().st_mtime_ns, resynth.stat().st_mtime_ns]
    os.utime(codec / ".done")  # now: after what stage 3 made from it
    result = run(*stage3)
    assert result.returncode == 0 and "was decoded before" in result.stderr
    assert before[0] < (codes / ".done").stat().st_mtime_ns and before[1] < resynth.stat().st_mtime_ns
    tokenizer_id = tokens.joinpath(".done").read_text().strip()
    pretrain.joinpath(".done").write_text(f"{tokenizer_id} {mini_dir / 'mini_dev'}\n")
    s2a.mkdir()
    s2a.joinpath(".done").write_text(f"{tokenizer_id} {codec}\n")
    os.utime(s2a / ".done", ns=(before[0], before[0]))
    result = run(*args, "--stage", 4, "--stop-stage", 4)
    assert (
        result.returncode == 1 and f"{s2a} was trained on its codes before {codec} was trained again" in result.stderr
    )


@pytest.mark.slow
def test_stage0_fails_loudly_on_a_corrupted_corpus(tmp_path):
    mini_dir = tmp_path / "mini"
    assert (
        run("--data-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0, "--exp-dir", tmp_path / "exp").returncode
        == 0
    )
    (mini_dir / ".done").unlink()
    (mini_dir / "mini_dev" / "text").write_text("spk01_s9999 ghost\n")
    (mini_dir / "mini_dev" / ".done").touch()
    result = run("--data-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0, "--exp-dir", tmp_path / "exp")
    assert result.returncode != 0
    assert "mini_dev" in result.stdout + result.stderr and not (mini_dir / ".done").exists()


def test_shipped_configs_stop_on_steps_not_minutes():
    """A recipe's result must not depend on how busy the machine is: no shipped config sets a time budget."""
    import yaml

    configs = sorted((REPO / "conf").glob("*/*.yaml")) + sorted((REPO / "conf").glob("*/tuning/*.yaml"))
    configs += sorted((REPO / "egs").glob("*/conf/*/*.yaml"))
    assert len(configs) >= 20
    for path in configs:
        train = yaml.safe_load(path.read_text()).get("train", {})
        assert train.get("max_minutes") is None, f"{path} stops on train.max_minutes"


def test_tuning_configs_are_whole_configs_their_trainers_accept(tmp_path):
    """conf/<scale>/tuning/*.yaml (the ablations the docs measured) resolve with their trainer's checks, and each
    differs from the config it tunes."""
    import yaml

    from metis_cli.config import load_config
    from metis_cli.train.codec import resolve_config
    from metis_cli.train.s2a import S2ALearner

    resolvers = {"s2a": S2ALearner.resolve, "codec": resolve_config}
    tuning = sorted((REPO / "conf").glob("*/tuning/*.yaml"))
    assert len(tuning) >= 2
    for path in tuning:
        kind = path.stem.split("_")[0]
        base = {"s2a": "s2a.yaml", "codec": "codec_neural.yaml"}[kind]
        tuned = load_config(path, resolve=resolvers[kind])
        plain = load_config(path.parents[1] / base, resolve=resolvers[kind])
        assert tuned != plain and tuned["train"]["max_steps"] > plain["train"]["max_steps"], path
        assert yaml.safe_load(path.read_text())["train"].get("max_minutes") is None
    data = tmp_path / "data"
    for name in ("mini_train", "mini_dev", "mini_vc_test"):
        (data / name).mkdir(parents=True)
    args = ("--stage", 3, "--stop-stage", 3, "--data-dir", data, "--codec-config", "tuning/codec_nope.yaml")
    result = recipe("vc", *args)
    assert result.returncode == 1 and "--codec-config tuning/codec_nope.yaml: no such file" in result.stderr
