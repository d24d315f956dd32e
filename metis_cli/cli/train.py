"""``metis pretrain``, ``metis train-s2a`` and ``metis finetune``: thin wrappers over metis_cli.train."""

from pathlib import Path
from typing import Optional

import typer

from metis_cli.cli.common import CHECK_CONFIG, PRINT_CONFIG, require_train_data, run_trainer

TRAIN_DATA_HELP = "Data dir with ssl_tokens/ to train on (repeat for several)."


OVERWRITE = typer.Option(
    False, "--overwrite", help="Delete the exp dir's earlier run first (needed to rerun it with another config)."
)


def _run(
    kind: str,
    config: Path,
    exp_dir: Path,
    overrides,
    train_data,
    val_data,
    verbose: bool,
    overwrite: bool = False,
    print_config: bool = False,
    check_config: bool = False,
    **settings,
) -> None:
    from metis_cli.errors import MetisError

    if kind == "pretrain":
        from metis_cli.train.pretrain import PretrainLearner as learner
        from metis_cli.train.pretrain import pretrain as run
    elif kind == "finetune":
        from metis_cli.train.finetune import FinetuneLearner as learner
        from metis_cli.train.finetune import finetune as run
    else:
        from metis_cli.train.s2a import S2ALearner as learner
        from metis_cli.train.s2a import train_s2a as run

    def adjust(loaded: dict) -> dict:  # the options' settings (task, init, decoder) over the config's
        for key, value in settings.items():
            if key == "task" and loaded.get("task") not in (None, value):
                raise MetisError(f"{config} is a config for task '{loaded['task']}', not '{value}'")
            loaded[key] = {**(loaded.get(key) or {}), **value} if isinstance(value, dict) else value
        return loaded

    run_trainer(
        config,
        overrides,
        learner.resolve,
        exp_dir,
        lambda loaded: run(loaded, exp_dir, train_data, val_data or []),
        show=print_config,
        check=check_config,
        overwrite=overwrite,
        verbose=verbose,
        adjust=adjust,
        require=lambda: require_train_data(train_data),
    )


def decoder_dirs(s2a, codec) -> dict:
    """The S2A and codec dirs a fine-tuned model records (config section ``decoder``)."""
    from metis_cli.errors import MetisError

    if not (s2a and codec):
        raise MetisError("give both --s2a and --codec (the S2A model(s) and the codec the model is decoded with)")
    return {"s2a": [str(Path(d).resolve()) for d in s2a], "codec": str(Path(codec).resolve())}


def pretrain(
    config: Path = typer.Argument(..., help="YAML config (conf/mini/pretrain.yaml, conf/full/pretrain.yaml)."),
    exp_dir: Path = typer.Argument(..., help="Experiment dir: resolved config, checkpoints, logs, metrics."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=100."),
    train_data: Optional[list[Path]] = typer.Option(None, help=TRAIN_DATA_HELP),
    val_data: Optional[list[Path]] = typer.Option(
        None, help="Data dir(s) with ssl_tokens/ for validation (masked-token CE and accuracy)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    overwrite: bool = OVERWRITE,
    print_config: bool = PRINT_CONFIG,
    check_config: bool = CHECK_CONFIG,
) -> None:
    """Stage-1 pre-training: masked generative modelling of SSL tokens, no condition (stage 4).

    Rerunning the same command resumes from the newest checkpoint (another config is refused; --overwrite starts
    again). Multi-GPU:
    torchrun --nproc_per_node 8 -m metis_cli pretrain conf/full/pretrain.yaml exp/pretrain_full --train-data data/train

    Example: metis pretrain conf/mini/pretrain.yaml exp/pretrain_mini --train-data data/mini/mini_train --val-data
    data/mini/mini_dev
    """
    _run("pretrain", config, exp_dir, overrides, train_data, val_data, verbose, overwrite, print_config, check_config)


def train_s2a(
    config: Path = typer.Argument(
        ..., help="YAML config (conf/mini/s2a.yaml; conf/full/s2a_coarse.yaml + s2a_fine.yaml)."
    ),
    exp_dir: Path = typer.Argument(..., help="Experiment dir: resolved config, checkpoints, logs, metrics."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=100."),
    train_data: Optional[list[Path]] = typer.Option(
        None, help="Data dir with ssl_tokens/ and acoustic_codes/ (repeat for several)."
    ),
    val_data: Optional[list[Path]] = typer.Option(
        None, help="Data dir(s) for validation (per-codebook CE and accuracy)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    overwrite: bool = OVERWRITE,
    print_config: bool = PRINT_CONFIG,
    check_config: bool = CHECK_CONFIG,
) -> None:
    """Train S2A, the masked acoustic decoder: codec codes given SSL tokens (stage 4).

    Rerunning the same command resumes from the newest checkpoint (another config is refused; --overwrite starts again).

    Example: metis train-s2a conf/mini/s2a_vector.yaml exp/s2a_mini_vector --train-data data/mini/mini_train --val-data
    data/mini/mini_dev
    """
    _run("s2a", config, exp_dir, overrides, train_data, val_data, verbose, overwrite, print_config, check_config)


def finetune(
    config: Path = typer.Argument(
        ..., help="YAML config (egs/<task>/conf/mini/finetune.yaml, egs/<task>/conf/full/finetune.yaml)."
    ),
    exp_dir: Path = typer.Argument(
        ..., help="Experiment dir of the task model: config, checkpoints, logs, phones.txt."
    ),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value overrides, e.g. adaptation.rank=32 train.max_steps=100."
    ),
    task: str = typer.Option(
        ..., help="tts, vc, se, tse, l2s or omni (TTS, VC, SE and TSE in one model: egs/omni/conf/*/finetune.yaml)."
    ),
    init: Path = typer.Option(..., help="Experiment dir of the pre-trained stage-1 model (`metis pretrain`)."),
    s2a: Optional[list[Path]] = typer.Option(
        None,
        help="S2A experiment dir(s) the model is decoded with, recorded so that decode and synth need not repeat them.",
    ),
    codec: Optional[Path] = typer.Option(
        None, help="Codec experiment dir the model is decoded with, recorded likewise."
    ),
    train_data: Optional[list[Path]] = typer.Option(
        None, help="Clean data dir with wav.scp, ssl_tokens/ (and text for TTS); repeat for several."
    ),
    val_data: Optional[list[Path]] = typer.Option(
        None, help="Data dir(s) for validation (inputs made the same way, with seed 0)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    overwrite: bool = OVERWRITE,
    print_config: bool = PRINT_CONFIG,
    check_config: bool = CHECK_CONFIG,
) -> None:
    """Fine-tune the pre-trained stage-1 model for a task (stage 5): LoRA, full or adapter-only.

    The training inputs are made on the fly from clean speech: noisy + reverberant (se), mixed with
    another speaker (tse), timbre-perturbed (vc); TTS reads the transcripts. Rerunning resumes (another config is
    refused; --overwrite starts again).

    Example: metis finetune egs/se/conf/mini/finetune.yaml exp/se_mini --task se --init exp/pretrain_mini --train-data
    data/mini/mini_train --val-data data/mini/mini_dev
    """
    _run(
        "finetune",
        config,
        exp_dir,
        overrides,
        train_data,
        val_data,
        verbose,
        overwrite,
        print_config,
        check_config,
        task=task,
        init={"exp_dir": str(init.resolve())},
        **({"decoder": decoder_dirs(s2a, codec)} if s2a or codec else {}),
    )


def export_adapter(
    exp_dir: Path = typer.Argument(..., help="Experiment dir of a fine-tuned task model (`metis finetune`)."),
    out: Optional[Path] = typer.Option(
        None,
        help="A new task dir to share: the adapter plus the small files decoding reads, no checkpoints "
        "(default: <exp-dir>/adapter only).",
    ),
    checkpoint: Optional[Path] = typer.Option(None, help="A checkpoint dir other than the newest."),
) -> None:
    """Save what a fine-tune trained apart from the pre-trained model: adapter/adapter.safetensors, adapter.json
    (the base model and its sha256) and, for LoRA, adapter/peft/ in the peft library's layout.

    Fine-tuning writes it by itself (LoRA and adapter modes). A task dir with adapter/ and no checkpoints decodes
    like the full one, given the pre-trained model adapter.json names.

    Example: metis export-adapter egs/vc/exp/vc_mini --out shared/vc_mini
    """
    from metis_cli.log import console, setup_logging
    from metis_cli.tasks.adapter_files import export_adapter as export

    setup_logging()
    info = export(exp_dir, out, checkpoint)
    where = (out or exp_dir) / "adapter"
    console.print(
        f"{where}: {info['parameters']:,} of {info['model_parameters']:,} parameters, "
        f"{info['bytes'] / 1e6:.2f} MB against {info['model_bytes'] / 1e6:.2f} MB for the whole model"
        + (" (+ peft/)" if "peft" in info else "")
    )
