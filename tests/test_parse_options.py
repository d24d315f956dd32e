"""Tests for utils/parse_options.sh and utils/log.sh (run through real bash)."""

import re
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[1] / "utils"

# Defaults a typical recipe defines before sourcing parse_options.sh; after
# parsing, the script dumps the variables and the leftover positional args.
PREAMBLE = """\
#!/usr/bin/env bash
set -euo pipefail
stage=0
stop_stage=100
nj=2
config_dir=conf/mini
use_gpu=false
"""

DUMP = """
. "{utils}/parse_options.sh"
echo "stage=$stage stop_stage=$stop_stage nj=$nj config_dir=$config_dir use_gpu=$use_gpu"
printf 'args=%s\\n' "$#"
printf '<%s>' "$@"; echo
"""


def run_script(tmp_path, body, *args, name="run.sh"):
    script = tmp_path / name
    script.write_text(body.replace("{utils}", str(UTILS)))
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
    )


def parse(tmp_path, *args, extra=""):
    return run_script(tmp_path, PREAMBLE + extra + DUMP, *args)


def values(proc):
    """Turn the first stdout line ("k=v k=v ...") into a dict."""
    first = proc.stdout.splitlines()[0]
    return dict(kv.split("=", 1) for kv in first.split())


def test_defaults_untouched(tmp_path):
    p = parse(tmp_path)
    assert p.returncode == 0, p.stderr
    assert values(p) == {"stage": "0", "stop_stage": "100", "nj": "2", "config_dir": "conf/mini", "use_gpu": "false"}
    assert p.stdout.splitlines()[1] == "args=0"


def test_set_option(tmp_path):
    p = parse(tmp_path, "--stage", "3", "--nj", "8")
    assert p.returncode == 0, p.stderr
    assert values(p)["stage"] == "3"
    assert values(p)["nj"] == "8"


def test_equals_form(tmp_path):
    p = parse(tmp_path, "--stage=4", "--config-dir=conf/a=b")
    assert p.returncode == 0, p.stderr
    assert values(p)["stage"] == "4"
    assert values(p)["config_dir"] == "conf/a=b"  # only the first '=' splits


def test_dash_to_underscore(tmp_path):
    p = parse(tmp_path, "--stop-stage", "7", "--config-dir", "conf/full")
    assert p.returncode == 0, p.stderr
    assert values(p)["stop_stage"] == "7"
    assert values(p)["config_dir"] == "conf/full"


def test_value_with_spaces_kept_intact(tmp_path):
    body = PREAMBLE + '. "{utils}/parse_options.sh"\nprintf "[%s]\\n" "$config_dir"\n'
    p = run_script(tmp_path, body, "--config-dir", "my dir/x")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[my dir/x]\n"


def test_unknown_option_fails(tmp_path):
    p = parse(tmp_path, "--foo", "1", extra='help_message="Usage: run.sh [opts] <dir>"\n')
    assert p.returncode == 1
    assert "run.sh: unknown option --foo" in p.stderr
    assert "Usage: run.sh [opts] <dir>" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("opt", ["--foo.bar", "--1x", "--a b"])
def test_invalid_names_are_unknown(tmp_path, opt):
    p = parse(tmp_path, opt, "1")
    assert p.returncode == 1
    assert f"unknown option {opt}" in p.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(tmp_path, flag):
    p = parse(tmp_path, "--stage", "1", flag, extra='help_message="Usage: run.sh [opts] <dir>"\n')
    assert p.returncode == 0
    assert p.stdout == "Usage: run.sh [opts] <dir>\n"


def test_help_default_message(tmp_path):
    p = parse(tmp_path, "--help")
    assert p.returncode == 0
    assert p.stdout.startswith("Usage: run.sh")


def test_trailing_option_without_value(tmp_path):
    p = parse(tmp_path, "--stage", "1", "--nj")
    assert p.returncode == 1
    assert "option --nj needs a value" in p.stderr


def test_boolean_validation(tmp_path):
    ok = parse(tmp_path, "--use-gpu", "true")
    assert ok.returncode == 0, ok.stderr
    assert values(ok)["use_gpu"] == "true"

    bad = parse(tmp_path, "--use-gpu", "yes")
    assert bad.returncode == 1
    assert "--use-gpu" in bad.stderr and "true or false" in bad.stderr
    assert "'yes'" in bad.stderr

    # Non-boolean variables accept anything, including "true".
    free = parse(tmp_path, "--nj", "true")
    assert free.returncode == 0 and values(free)["nj"] == "true"


def test_config_file(tmp_path):
    (tmp_path / "opts.conf").write_text("# comment\nnj=16\nstage=2\n")
    p = parse(tmp_path, "--config", "opts.conf")
    assert p.returncode == 0, p.stderr
    assert values(p)["nj"] == "16" and values(p)["stage"] == "2"


def test_config_is_applied_first(tmp_path):
    (tmp_path / "opts.conf").write_text("nj=16\nstage=2\n")
    # The command line wins over the config file regardless of order.
    for args in (["--stage", "5", "--config", "opts.conf"], ["--config=opts.conf", "--stage", "5"]):
        p = parse(tmp_path, *args)
        assert p.returncode == 0, p.stderr
        assert values(p)["stage"] == "5" and values(p)["nj"] == "16"


def test_config_missing(tmp_path):
    p = parse(tmp_path, "--config", "nope.conf")
    assert p.returncode == 1
    assert "nope.conf" in p.stderr and "not found" in p.stderr


def test_positional_args_left(tmp_path):
    p = parse(tmp_path, "--stage", "1", "data/train", "exp dir")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert values(p)["stage"] == "1"
    assert lines[1:] == ["args=2", "<data/train><exp dir>"]


def test_parsing_stops_at_first_positional(tmp_path):
    p = parse(tmp_path, "data", "--stage", "9")
    assert p.returncode == 0, p.stderr
    assert values(p)["stage"] == "0"
    assert p.stdout.splitlines()[1:] == ["args=3", "<data><--stage><9>"]


def test_double_dash(tmp_path):
    p = parse(tmp_path, "--nj", "4", "--", "--stage", "9")
    assert p.returncode == 0, p.stderr
    assert values(p)["nj"] == "4" and values(p)["stage"] == "0"
    assert p.stdout.splitlines()[1:] == ["args=2", "<--stage><9>"]


def test_no_helper_variables_leak(tmp_path):
    body = PREAMBLE + '. "{utils}/parse_options.sh"\nset | grep -c "^__po" || true\n'
    p = run_script(tmp_path, body, "--nj", "3")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0"


LOG_SCRIPT = """\
#!/usr/bin/env bash
set -euo pipefail
. "{utils}/log.sh"
log "hello world"
helper() {
  log "from helper"
}
helper
die "boom"
echo "not reached"
"""

LOG_RE = r"^\d{{4}}-\d{{2}}-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}} \(stage1\.sh:{line}:{func}\) {msg}$"


def test_log_and_die(tmp_path):
    p = run_script(tmp_path, LOG_SCRIPT, name="stage1.sh")
    assert p.returncode == 1
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 3, p.stderr
    assert re.match(LOG_RE.format(line=4, func="main", msg="hello world"), lines[0]), lines[0]
    assert re.match(LOG_RE.format(line=6, func="helper", msg="from helper"), lines[1]), lines[1]
    assert re.match(LOG_RE.format(line=9, func="main", msg="ERROR: boom"), lines[2]), lines[2]
