"""Adapter files: what a fine-tune trained, saved apart from the pre-trained model it starts from.

A fine-tuned exp dir's checkpoints hold the whole model (what training resumes from). ``export_adapter`` keeps
only the tensors that differ from the pre-trained weights (LoRA matrices, the condition modules: phone
embedding and prefix MLP, frame adapter, visual front end; for ``adaptation.mode: full``, everything), in

    <exp>/adapter/adapter.safetensors   the tensors, under the fine-tuned model's names
    <exp>/adapter/adapter.json          the base (pre-trained exp dir, checkpoint, weights file and its sha256),
                                        the task, the adaptation, counts and sizes
    <exp>/adapter/peft/                 LoRA fine-tunes: the same in the layout of the ``peft`` library
                                        (adapter_model.safetensors + adapter_config.json; the condition
                                        modules as ``modules_to_save``)

Loading is base + adapter (``adapter_state_dict``): the pre-trained weights under the fine-tuned names, the
adapter's tensors over them, the base's checksum checked first. A task exp dir with ``adapter/`` and no
``checkpoints/`` (``metis export-adapter EXP --out DIR`` writes one: the adapter and the small files decoding
reads) decodes like the full one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from metis_cli.checkpoint import checkpoint_dirs, weights_name
from metis_cli.config import read_exp_config
from metis_cli.data.datadir import atomic_write_text
from metis_cli.errors import MetisError
from metis_cli.files import umask_mode
from metis_cli.models.lora import TARGETS

ADAPTER_DIR = "adapter"
# What a shared task dir needs besides the adapter to decode (the checkpoints are left out).
SMALL_FILES = ("config.yaml", "phones.txt", "kmeans", "ssl_stats.safetensors", "parameters.json", "git_revision.txt")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _wrapped(keys) -> set[str]:
    """Modules wrapped by LoRA: ``X`` for every ``X.lora_A``."""
    return {k.removesuffix(".lora_A") for k in keys if k.endswith(".lora_A")}


def base_name(key: str, wrapped: set[str]) -> str:
    """The pre-trained model's name of a fine-tuned tensor: ``X.base.weight`` -> ``X.weight`` for a wrapped X."""
    module, _, param = key.rpartition(".")
    if module.endswith(".base") and module.removesuffix(".base") in wrapped:
        return f"{module.removesuffix('.base')}.{param}"
    return key


def tuned_name(key: str, wrapped: set[str]) -> str:
    """The inverse of ``base_name``."""
    module, _, param = key.rpartition(".")
    return f"{module}.base.{param}" if module in wrapped else key


def _base_weights(config: dict) -> Path:
    init = config.get("init") or {}
    if not init.get("exp_dir") or not init.get("checkpoint"):
        raise MetisError("the model's config.yaml records no pre-trained model (section init): not a fine-tune")
    pre = read_exp_config(init["exp_dir"])
    return Path(init["checkpoint"]) / f"{weights_name(pre, 'stage1')}.safetensors"


def _checkpoint(exp_dir: Path, config: dict, checkpoint=None) -> Path:
    for path in checkpoint_dirs(exp_dir, checkpoint):
        weights = path / f"{weights_name(config, 'stage1')}.safetensors"
        if weights.is_file():
            return weights
    raise MetisError(f"{exp_dir}: no fine-tuned checkpoint to take the adapter from; fine-tune first")


def split_adapter(tuned: dict, base: dict) -> dict:
    """The tensors of ``tuned`` that are not the pre-trained ones: new names, or other values."""
    wrapped = _wrapped(tuned)
    out = {}
    for key, value in tuned.items():
        old = base.get(base_name(key, wrapped))
        if old is None or old.shape != value.shape or not torch.equal(old, value):
            out[key] = value
    return out


def export_adapter(exp_dir, out=None, checkpoint=None) -> dict:
    """Writes ``<out or exp>/adapter/`` (see the module doc); with ``out``, also the small files a task dir
    needs to decode, so that ``out`` is a shareable task dir. Returns adapter.json's content."""
    from safetensors.torch import load_file, save_file

    exp_dir = Path(exp_dir)
    config = read_exp_config(exp_dir)
    if not config.get("task"):
        raise MetisError(f"{exp_dir}: not a fine-tuned task model (its config.yaml names no task)")
    weights, base_file = _checkpoint(exp_dir, config, checkpoint), _base_weights(config)
    if not base_file.is_file():
        raise MetisError(f"the pre-trained weights {base_file} the model was fine-tuned from are missing")
    tuned, base = load_file(str(weights)), load_file(str(base_file))
    adapter = split_adapter(tuned, base)
    target = Path(out) if out else exp_dir
    folder = target / ADAPTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter, str(folder / "adapter.safetensors"), metadata={"format": "metis-adapter"})
    os.chmod(folder / "adapter.safetensors", umask_mode())  # readable like any other file metis writes
    adaptation = config.get("adaptation") or {}
    info = {
        "format": "metis-adapter",
        "task": config["task"],
        "adaptation": adaptation,
        "base": {
            "exp_dir": str(Path(config["init"]["exp_dir"]).resolve()),
            "checkpoint": str(Path(config["init"]["checkpoint"]).resolve()),
            "weights": base_file.name,
            "sha256": sha256_of(base_file),
        },
        "fine_tuned_checkpoint": str(weights.parent.resolve()),
        "tensors": len(adapter),
        "parameters": sum(v.numel() for v in adapter.values()),
        "model_parameters": sum(v.numel() for v in tuned.values()),
        "bytes": (folder / "adapter.safetensors").stat().st_size,
        "model_bytes": weights.stat().st_size,
    }
    if adaptation.get("mode", "lora") == "lora" and _wrapped(adapter):
        info["peft"] = _write_peft(adapter, adaptation, info["base"]["exp_dir"], folder / "peft")
    atomic_write_text(folder / "adapter.json", json.dumps(info, indent=2) + "\n")
    if out:
        for name in SMALL_FILES:
            source = exp_dir / name
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, target / name)
    return info


def _write_peft(adapter: dict, adaptation: dict, base_dir: str, folder: Path) -> dict:
    """The adapter in the ``peft`` library's LoRA layout: ``base_model.model.<module>.lora_A.weight`` [r, in],
    ``lora_B.weight`` [out, r]; the other trained tensors as ``modules_to_save`` (``base_model.model.<name>``)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors, saved_modules = {}, set()
    for key, value in adapter.items():
        module, _, param = key.rpartition(".")
        if param in ("lora_A", "lora_B"):
            tensors[f"base_model.model.{module}.{param}.weight"] = value.contiguous()
        else:
            tensors[f"base_model.model.{key}"] = value.contiguous()
            saved_modules.add(key.split(".")[0])
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    os.chmod(folder / "adapter_model.safetensors", umask_mode())
    rank = int(adaptation.get("rank", 16))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": float(adaptation.get("alpha") or 2 * rank),
        "lora_dropout": float(adaptation.get("dropout", 0.0)),
        "target_modules": list(TARGETS),
        "modules_to_save": sorted(saved_modules) or None,
        "base_model_name_or_path": base_dir,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "task_type": None,
    }
    atomic_write_text(folder / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    return {"files": ["adapter_model.safetensors", "adapter_config.json"], "modules_to_save": config["modules_to_save"]}


def read_peft(folder) -> dict:
    """A peft-layout LoRA adapter back into metis names (the inverse of ``_write_peft``)."""
    from safetensors.torch import load_file

    out = {}
    for key, value in load_file(str(Path(folder) / "adapter_model.safetensors")).items():
        name = key.removeprefix("base_model.model.")
        for param in ("lora_A", "lora_B"):
            if name.endswith(f".{param}.weight"):
                name = name.removesuffix(".weight")
        out[name] = value
    return out


def has_adapter(exp_dir) -> bool:
    return (Path(exp_dir) / ADAPTER_DIR / "adapter.json").is_file()


def adapter_state_dict(exp_dir) -> tuple[dict, dict]:
    """The fine-tuned model's whole state dict from its base + adapter, and adapter.json's content; the base
    weights must be the ones the adapter was made from (same sha256)."""
    from safetensors.torch import load_file

    folder = Path(exp_dir) / ADAPTER_DIR
    info = json.loads((folder / "adapter.json").read_text())
    base_file = Path(info["base"]["checkpoint"]) / info["base"]["weights"]
    if not base_file.is_file():
        raise MetisError(
            f"{folder}: its pre-trained model {base_file} is missing; put the pre-trained exp dir "
            f"({info['base']['exp_dir']}) there first"
        )
    if sha256_of(base_file) != info["base"]["sha256"]:
        raise MetisError(f"{folder}: {base_file} is not the pre-trained model this adapter was made from (sha256)")
    adapter = load_file(str(folder / "adapter.safetensors"))
    wrapped = _wrapped(adapter)
    state = {tuned_name(k, wrapped): v for k, v in load_file(str(base_file)).items()}
    state.update(adapter)
    return state, info
