"""The metis command: help texts, start-up cost, exit codes and messages."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, make_datadir
from typer.testing import CliRunner

from metis_cli.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"]])
def test_help_does_not_import_torch(argv):
    """What keeps `metis --help` fast (timed in bench/cli_startup.py, not here): no torch at import."""
    code = (
        "import sys; from metis_cli.cli import app\n"
        "try:\n    app(%r)\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH')" % (argv,)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "NO_TORCH" in out


def test_every_command_has_help_with_an_example():
    for argv in (["data", "validate"], ["data", "subset"], ["data", "split"], ["data", "make-mini"], ["version"]):
        result = run(*argv, "--help")
        assert result.exit_code == 0, result.output
        assert "Example: metis" in result.output, argv


def test_top_level_lists_commands():
    result = run("--help")
    assert result.exit_code == 0 and "data" in result.output and "version" in result.output


def test_validate_ok_and_json(tmp_path):
    dd = make_datadir(tmp_path)
    result = run("data", "validate", dd, "--json", tmp_path / "v.json")
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    summary = json.loads((tmp_path / "v.json").read_text())[str(dd)]
    assert summary["utterances"] == 4 and summary["errors"] == []


def test_validate_failure_exits_1_and_names_the_problem(tmp_path):
    dd = make_datadir(tmp_path)
    (tmp_path / "wav" / "spkA_u0.wav").unlink()
    result = run("data", "validate", dd)
    assert result.exit_code == 1
    assert "utterance 'spkA_u0'" in result.output and "audio file not found" in result.output
    assert "1 of 1 data dir(s) failed validation" in result.output
    assert "Traceback" not in result.output


def test_an_id_that_would_write_outside_the_output_dir_is_refused(tmp_path):
    dd = make_datadir(tmp_path)
    for name in ("wav.scp", "utt2spk", "text"):
        table = (dd / name).read_text().replace("spkA_u0", "../../x")
        (dd / name).write_text(table)
    result = run("data", "validate", dd)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "id '../../x' contains '/', '\\' or '..'; ids name files, so rename it" in " ".join(result.output.split())


def test_a_command_line_path_is_never_run_as_a_command(tmp_path):
    flag = tmp_path / "ran"
    result = run("detect", f"touch {flag} |")
    assert not flag.exists()
    assert "shell command, which only wav.scp entries may be" in " ".join(result.output.split())


def test_version_option():
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == run("version").output.strip()


def test_validate_fix_sorts(tmp_path):
    dd = make_datadir(tmp_path)
    lines = (dd / "utt2spk").read_text().splitlines(keepends=True)
    (dd / "utt2spk").write_text("".join(reversed(lines)))
    assert run("data", "validate", dd).exit_code == 1
    result = run("data", "validate", dd, "--fix")
    assert result.exit_code == 0, result.output
    assert "fixed utt2spk" in result.output


def test_subset_and_split_commands(tmp_path):
    dd = make_datadir(tmp_path)
    result = run("data", "subset", dd, tmp_path / "sub", "--first", 3)
    assert result.exit_code == 0, result.output
    assert "3 utterances, 2 speakers" in result.output
    result = run("data", "subset", dd, tmp_path / "sub", "--first", 1)
    assert result.exit_code == 1 and "pass --overwrite" in result.output
    result = run("data", "subset", dd, tmp_path / "sub2", "--utt-list", tmp_path / "missing.list")
    assert result.exit_code == 1 and "missing.list: id list not found" in result.output
    result = run("data", "split", dd, 2, "--by", "spk")
    assert result.exit_code == 0 and "split2spk/1" in result.output
    result = run("data", "split", dd, 2, "--by", "word")
    assert result.exit_code == 1 and "split by must be 'utt' or 'spk'" in result.output


def test_make_mini_rejects_unknown_size(tmp_path):
    result = run("data", "make-mini", tmp_path / "mini", "--size", "huge")
    assert result.exit_code == 1 and "unknown corpus size 'huge'" in result.output


def test_console_script_entry_point_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "metis_cli", "data", "validate", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "data dir not found" in result.stdout + result.stderr


def test_tasks_prints_the_registry_and_single_fields():
    from metis_cli.task_registry import FINE_TUNED, TASKS

    result = run("tasks")
    assert result.exit_code == 0 and all(f"{name}: " in result.output for name in TASKS)
    assert run("tasks", "vc", "--field", "floor_scp").output == "src.scp\n"
    assert run("tasks", "tts", "--field", "floor_scp").output == "\n"  # no unprocessed input: the recipe skips it
    assert run("tasks", "se", "--field", "metrics").output == "wer dnsmos pesq stoi sisdr\n"
    assert run("tasks", "omni", "--field", "synth_options").output.split() == [
        "ref", "text", "ref_text", "duration", "src", "noisy", "mix"
    ]  # fmt: skip
    bad = run("tasks", "asr")
    assert bad.exit_code == 1 and "unknown task 'asr'; choose from tts, vc, se, tse, l2s, omni" in bad.output
    # every fine-tuned task has its recipe and its mini and full fine-tuning configs
    for name in FINE_TUNED:
        assert (REPO / "egs" / name / "run.sh").is_file()
        assert (REPO / "egs" / name / "conf" / "mini" / "finetune.yaml").is_file()
        assert (REPO / "egs" / name / "conf" / "full" / "finetune.yaml").is_file()


def test_decoding_runs_where_it_can_by_default(monkeypatch, caplog):
    import torch

    from metis_cli import env
    from metis_cli.errors import MetisError
    from metis_cli.infer.options import DecodeOptions

    gpu = torch.cuda.is_available()
    for native in (True, False):
        # auto: a GPU when one is visible, bf16 there and on a CPU that computes it (AMX, AVX512-BF16)
        monkeypatch.setattr(env, "cpu_bf16_native", lambda native=native: native)
        placed = DecodeOptions().placed()
        assert (placed.device, placed.bf16) == (("cuda", True) if gpu else ("cpu", native))
        assert DecodeOptions(device="cpu", int8=True).placed().bf16 is False
    # asked for on a CPU that emulates bf16: done, with a warning that it is slow
    with caplog.at_level("WARNING"):
        assert DecodeOptions(device="cpu", bf16=True).placed().bf16 is True
    assert "bf16 on a CPU without AVX512-BF16 or AMX is emulated" in caplog.text
    assert DecodeOptions(device="cpu", bf16=False).placed().bf16 is False
    fast = DecodeOptions(device="cpu", preset="fast", s2a={"temperature": 1.0}).placed()
    assert (fast.stage1, fast.s2a) == ({"steps": 10}, {"steps": [10, 4, 1], "temperature": 1.0})
    assert fast.placed() == fast  # placing twice changes nothing
    assert DecodeOptions(device="cpu", preset="fast", stage1={"steps": 4}).placed().stage1 == {"steps": 4}
    assert DecodeOptions(device="cpu").placed().stage1 is None  # published: the task's own settings
    with pytest.raises(MetisError, match="unknown decoding preset 'quick': choose published, fast"):
        DecodeOptions(preset="quick").placed()
    with pytest.raises(MetisError, match="--int8 and --bf16 exclude each other"):
        DecodeOptions(device="cpu", bf16=True, int8=True).placed()
    if not gpu:
        with pytest.raises(MetisError, match="--device cuda: no CUDA GPU is visible here"):
            DecodeOptions(device="cuda").placed()
