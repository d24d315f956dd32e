"""Reading an experiment dir's weights: what inference, conversion and resuming share, below training.

A trainer writes ``<exp_dir>/checkpoints/step_<N>/<name>.safetensors`` (see :mod:`metis_cli.train.trainer`);
:func:`load_weights` reads the newest readable one into a model, :func:`weights_name` says which weights an
experiment decodes with (its EMA when it kept one), :func:`state_dict_mismatch` turns a ``load_state_dict``
error into the one line that says why a checkpoint does not fit. The experiment's config is read with
:func:`metis_cli.config.read_exp_config`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)


def state_dict_mismatch(exc: BaseException) -> str | None:
    """The line of a ``load_state_dict`` error that says why a checkpoint does not fit a model (size mismatch,
    missing or unexpected keys; it is not the first line), or None for any other error."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))), None)


def weights_name(config: dict, name: str) -> str:
    """The weights an experiment decodes with: its EMA (``ema``) when it kept one, else model ``name``."""
    return "ema" if float(config.get("ema", {}).get("decay", 0.0)) else name


def checkpoint_dirs(exp_dir, checkpoint=None) -> list[Path]:
    """The checkpoint dirs to read, best first: the given one, or every ``step_*`` of ``exp_dir``, newest first."""
    if checkpoint:
        return [Path(checkpoint)]
    return sorted((Path(exp_dir) / "checkpoints").glob("step_*"), reverse=True)


def load_weights(
    exp_dir, name: str, model: nn.Module, checkpoint=None, device: str = "cpu", what: str = "model"
) -> Path:
    """Loads ``<checkpoint>/<name>.safetensors`` into ``model``: the given checkpoint, or the newest
    readable one of ``exp_dir`` (an unreadable one, e.g. truncated by a killed run, falls back to the
    one before). Returns the checkpoint used."""
    from safetensors.torch import load_file

    exp_dir = Path(exp_dir)
    candidates = checkpoint_dirs(exp_dir, checkpoint)
    if not candidates:
        raise MetisError(f"{exp_dir}: no checkpoint of the {what}; train one first")
    errors = []
    for path in candidates:
        try:
            # read on the CPU: the caller moves the model where it runs
            model.load_state_dict(load_file(str(path / f"{name}.safetensors"), device="cpu"))
            step = path.name.rsplit("_", 1)[-1]
            # what decode.json records: which checkpoint (and training step) the weights came from
            model.checkpoint_info = {
                "path": str(path.resolve()),
                "weights": name,
                "step": int(step) if step.isdigit() else None,
            }
            return path
        except Exception as exc:
            detail = state_dict_mismatch(exc) or (str(exc).splitlines()[0] if str(exc) else "")
            errors.append(f"{path}: {type(exc).__name__}: {detail}")
            logger.warning("checkpoint %s is unreadable (%s); trying the previous one", path, detail)
    raise MetisError(
        f"no readable {what} checkpoint in {exp_dir} ({errors[0]})" + ("".join(f"; {e}" for e in errors[1:3]))
    )


def write_model_dir(out_dir, name: str, model: nn.Module, info: dict) -> dict:
    """A model dir: ``<name>.safetensors`` (the model's state dict) and ``<name>.json`` (``info``), each written
    to a temporary file first and renamed, so that a killed write leaves the earlier pair. Returns ``info``."""
    import json

    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, meta = out / f".{name}.safetensors.tmp", out / f".{name}.json.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(weights))
    meta.write_text(json.dumps(info, indent=2) + "\n")
    weights.replace(out / f"{name}.safetensors")
    meta.replace(out / f"{name}.json")
    return info
