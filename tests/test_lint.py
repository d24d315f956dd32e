"""The code gate: ruff with the repository's ruff.toml (pyflakes, bugbear, lines of at most 120 characters)
over the package, the tests, the benchmarks and the recipes' Python helpers."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_the_tree():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: bash tools/install.sh --test true (requirements/test.txt)")
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
