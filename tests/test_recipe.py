"""The recipes end to end on the tiny corpus: egs/tts/run.sh through every stage, then egs/se/run.sh
reusing the shared stages."""
import json
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
    assert result.returncode == 0 and "0 data" in result.stdout and "2 tokenize" in result.stdout and "7 score" in result.stdout
    assert "5 finetune" in result.stdout and "6 decode" in result.stdout


def test_a_stage_before_its_inputs_says_which_stage_to_run(tmp_path):
    vc = REPO / "egs" / "vc" / "run.sh"
    result = subprocess.run(["bash", str(vc), "--stage", "6", "--exp-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "vc_mini is not fine-tuned: run stage 5 first" in result.stderr
    result = subprocess.run(["bash", str(vc), "--stage", "5", "--pretrain-dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "none is not trained: run stage 4 first" in result.stderr
    result = subprocess.run(["bash", str(vc), "--task", "l2x"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "unknown --task l2x" in result.stderr


def test_unknown_option_fails():
    result = run("--bogus", "1")
    assert result.returncode == 1 and "unknown option --bogus" in result.stderr


def test_trailing_option_without_value_fails():
    result = run("--stage")
    assert result.returncode == 1 and "option --stage needs a value" in result.stderr


@pytest.mark.slow
def test_stage0_builds_validates_and_is_idempotent(tmp_path):
    mini_dir = tmp_path / "mini"
    result = run("--mini-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (mini_dir / ".done").is_file() and (mini_dir / "validate.json").is_file()
    assert "Stage 0: data" in result.stderr
    assert sorted(p.name for p in mini_dir.glob("mini_*")) == [
        "mini_dev", "mini_se_dev", "mini_se_test", "mini_test", "mini_train",
        "mini_tse_dev", "mini_tse_test", "mini_vc_dev", "mini_vc_test",
    ]
    again = run("--mini-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0)
    assert again.returncode == 0 and "already built and validated, skipping" in again.stderr
    assert "synthesising" not in again.stderr


@pytest.mark.slow
def test_main_job_on_the_tiny_corpus_scores_the_ground_truth(tmp_path):
    mini_dir, exp_dir = tmp_path / "mini", tmp_path / "exp"
    codec = "train.max_steps=2 data.batch_size=2 train.val_every=100 train.ckpt_every=100"
    small = ("train.max_steps=2 train.val_every=100 train.ckpt_every=100 model.transformer.dim=32 model.transformer.n_layers=1 "
             "model.transformer.n_heads=2 model.transformer.ffn_dim=64")
    result = run("--mini-dir", mini_dir, "--mini-size", "tiny", "--exp-dir", exp_dir, "--score-opts", "--report-utts 2",
                 "--codec-dir", tmp_path / "codec", "--codec-overrides", codec,
                 "--pretrain-dir", tmp_path / "pretrain", "--pretrain-overrides", small,
                 "--s2a-dir", tmp_path / "s2a", "--s2a-overrides", small,
                 "--resynth-opts", "--s2a-opt steps=[2,1] --stage1-opt steps=2",
                 "--finetune-overrides", FINETUNE, "--decode-opts", DECODE)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((exp_dir / "ground_truth" / "decode_mini_test" / "scores" / "summary.json").read_text())
    assert summary["counts"]["scored"] == 6 and summary["metrics"]["sim"]["mean"] > 0.8
    assert "## tts: mini_test" in (exp_dir / "RESULTS.md").read_text()
    tts = json.loads((exp_dir / "tts_mini" / "decode_mini_test" / "scores" / "summary.json").read_text())
    assert tts["task"] == "tts" and tts["counts"]["scored"] + tts["counts"]["failed"] == 6
    assert (exp_dir / "tts_mini" / ".done").read_text().strip() == str(tmp_path / "pretrain")
    for name in ("mini_train", "mini_dev", "mini_test"):
        assert (mini_dir / "ssl" / "builtin" / name / ".done").is_file()
        assert (mini_dir / name / "ssl_tokens" / "text.km").is_file()
    resynth = json.loads((exp_dir / "codec_resynth" / "decode_mini_test" / "scores" / "summary.json").read_text())
    # Two training steps make no codec: its output may fail as clipped, but every utterance is accounted for.
    assert resynth["task"] == "resynth" and resynth["counts"]["scored"] + resynth["counts"]["failed"] == 6
    assert ArrayStore(mini_dir / "mini_test" / "acoustic_codes")
    for name, task in (("s2a_resynth", "resynth"), ("pretrain_generate", "generate")):
        summary = json.loads((exp_dir / name / "decode_mini_test" / "scores" / "summary.json").read_text())
        assert summary["task"] == task and summary["counts"]["scored"] + summary["counts"]["failed"] == 6
    assert (tmp_path / "pretrain" / ".done").read_text().strip() == str(mini_dir / "kmeans" / "builtin_k128")
    quality = json.loads((mini_dir / "kmeans" / "builtin_k128" / "quality_mini_dev.json").read_text())
    assert quality["n_clusters"] == 128 and quality["pnmi"] > 0.3
    assert "scores: mean" in result.stdout
    # The SE recipe reuses the corpus, tokens, codec, pre-trained model and S2A: only stages 5-7 run.
    se_exp = tmp_path / "se_exp"
    se = subprocess.run(["bash", str(REPO / "egs" / "se" / "run.sh"), "--mini-dir", str(mini_dir), "--mini-size", "tiny",
                         "--exp-dir", str(se_exp), "--score-opts", "--report-utts 2 --metrics pesq,stoi,sisdr",
                         "--codec-dir", str(tmp_path / "codec"), "--pretrain-dir", str(tmp_path / "pretrain"),
                         "--s2a-dir", str(tmp_path / "s2a"), "--stage", "5", "--finetune-overrides", FINETUNE, "--decode-opts", DECODE],
                        capture_output=True, text=True, cwd=REPO)
    assert se.returncode == 0, se.stderr[-3000:]
    for name in ("se_mini", "input", "ground_truth"):
        summary = json.loads((se_exp / name / "decode_mini_se_test" / "scores" / "summary.json").read_text())
        assert summary["task"] == "se" and summary["counts"]["scored"] + summary["counts"]["failed"] == 6
    assert "## se: mini_se_test" in (se_exp / "RESULTS.md").read_text()


@pytest.mark.slow
def test_stage0_fails_loudly_on_a_corrupted_corpus(tmp_path):
    mini_dir = tmp_path / "mini"
    assert run("--mini-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0).returncode == 0
    (mini_dir / ".done").unlink()
    (mini_dir / "mini_dev" / "text").write_text("spk01_s9999 ghost\n")
    (mini_dir / "mini_dev" / ".done").touch()
    result = run("--mini-dir", mini_dir, "--mini-size", "tiny", "--stop-stage", 0)
    assert result.returncode != 0
    assert "mini_dev" in result.stdout + result.stderr and not (mini_dir / ".done").exists()
