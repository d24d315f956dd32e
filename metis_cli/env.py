"""What an experiment records about how it was run: the command line, the git revision, the software
and the hardware. Experiment dirs and RESULTS.md use it so that every number comes with its recipe."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "metis",
    "torch",
    "numpy",
    "soundfile",
    "soxr",
    "faiss-cpu",
    "faiss-gpu",
    "transformers",
    "pocketsphinx",
    "resemblyzer",
    "speechmos",
    "onnxruntime",
    "pesq",
    "pystoi",
    "librosa",
)


def resolve_device(device: str) -> str:
    """``auto``: the first CUDA GPU when one is visible, else the CPU; any other device as it is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` if torch can use it here; else a one-line error that says so (instead of a failure later,
    far from its cause, such as a checkpoint that "cannot be read")."""
    import torch

    from metis_cli.errors import MetisError

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise MetisError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise MetisError(
                f"--device {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False); use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise MetisError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif parsed.type != "cpu":
        raise MetisError(f"--device {device}: metis runs on cpu or cuda")
    return device


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX). Only there is bf16 faster than float32:
    on a 2-core AVX2 CPU (torch 2.13) bf16 autocast made a mini stage-1 training step about 25x slower and bf16
    weights made decoding 5.6x slower (docs/benchmarks.md)."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)
    try:  # a torch without these (private) checks: the kernel's CPU flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_cpu_bf16(wanted: bool | str) -> bool:
    """``bf16`` on the CPU as configured: True, False, or ``auto`` (where the CPU computes it natively)."""
    if wanted == "auto":
        return cpu_bf16_native()
    if wanted and not cpu_bf16_native():
        import logging

        logging.getLogger(__name__).warning(
            "bf16 on a CPU without AVX512-BF16 or AMX is emulated and many times slower than float32; "
            "set it to auto or false"
        )
    return bool(wanted)


def command_line() -> str:
    """The command as a user would type it again (program name without its install path)."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def git_revision(path: Path | None = None) -> str:
    """The commit of the checkout holding this package, with '-dirty' for uncommitted changes."""
    where = path or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """git revision, Python, package versions, CPU and GPU (torch is asked only if already installed)."""
    info = {
        "git revision": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": f"{_cpu_name()} ({os.cpu_count()} logical cores)",
    }
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        bf16 = "native" if cpu_bf16_native() else "emulated"
        info["cpu"] += f", {torch.backends.cpu.get_cpu_capability()}, bf16 {bf16}"
        info["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"
    except ImportError:
        info["gpu"] = "unknown (torch not installed)"
    return info
