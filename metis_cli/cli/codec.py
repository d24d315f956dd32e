"""``metis codec``: train, encode, decode (thin wrappers over metis_cli.codec)."""

from pathlib import Path
from typing import Optional

import typer

from metis_cli.cli.common import CHECK_CONFIG, PRINT_CONFIG, MetisTyper, require_train_data, run_trainer

app = MetisTyper(
    help="The acoustic codec (stage 3): train it, encode data dirs to acoustic_codes, decode codes to audio.\n\n"
    "Example: metis codec train conf/mini/codec.yaml exp/codec_mini --train-data data/mini/mini_train"
)


@app.command("train")
def train(
    config: Path = typer.Argument(
        ...,
        help="YAML config: conf/mini/codec.yaml (the parametric WORLD codec), conf/mini/codec_neural.yaml, "
        "conf/full/codec.yaml (neural).",
    ),
    exp_dir: Path = typer.Argument(..., help="Experiment dir: resolved config, checkpoints, logs, metrics."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=100."),
    train_data: Optional[Path] = typer.Option(None, help="Data dir to train on."),
    val_data: Optional[Path] = typer.Option(None, help="Data dir for the validation pass (a few decoded examples)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the exp dir's earlier run first (needed to rerun it with another config)."
    ),
    print_config: bool = PRINT_CONFIG,
    check_config: bool = CHECK_CONFIG,
) -> None:
    """Train the codec; rerunning the same command resumes from the newest checkpoint. A neural codec trains
    by gradient steps; the parametric one (model.kind: world) learns its quantiser by k-means in minutes.

    Multi-GPU: torchrun --nproc_per_node 8 -m metis_cli codec train ...

    Example: metis codec train conf/mini/codec.yaml exp/codec_mini --train-data data/mini/mini_train --val-data
    data/mini/mini_dev
    """
    from metis_cli.train.codec import resolve_config, train_codec

    run_trainer(
        config,
        overrides,
        resolve_config,
        exp_dir,
        lambda loaded: train_codec(loaded, exp_dir, train_data, val_data),
        show=print_config,
        check=check_config,
        overwrite=overwrite,
        verbose=verbose,
        require=lambda: require_train_data(train_data),
    )


@app.command("encode")
def encode(
    exp_dir: Path = typer.Argument(..., help="Codec experiment dir."),
    data_dir: Path = typer.Argument(..., help="Data dir to encode."),
    out: Optional[Path] = typer.Option(None, help="Code store (default DATA_DIR/acoustic_codes)."),
    nj: int = typer.Option(1, min=1, help="Parallel processes."),
) -> None:
    """Encode a data dir to acoustic codes (one frames x codebooks array per utterance; resumable).

    Example: metis codec encode exp/codec_mini data/mini/mini_train --nj 2
    """
    from metis_cli.codec.inference import encode_datadir
    from metis_cli.log import console, setup_logging

    setup_logging()
    summary = encode_datadir(exp_dir, data_dir, out, nj)
    console.print(
        f"{summary['out']}: {summary['utterances']} utterances, {summary['frames']} frames, {summary['failed']} failed"
    )


@app.command("decode")
def decode(
    exp_dir: Path = typer.Argument(..., help="Codec experiment dir."),
    codes_dir: Path = typer.Argument(..., help="Code store from `metis codec encode` (or a model)."),
    out_dir: Path = typer.Argument(..., help="Where wav/ and wav.scp go."),
    data: Optional[Path] = typer.Option(
        None, help="The data dir the codes came from: makes OUT_DIR a scoreable resynthesis decode dir."
    ),
) -> None:
    """Decode acoustic codes to wav files and a wav.scp.

    Example: metis codec decode exp/codec_mini data/mini/mini_test/acoustic_codes exp/resynth/decode_mini_test
    --data data/mini/mini_test
    """
    from metis_cli.codec.inference import decode_codes
    from metis_cli.log import console, setup_logging

    setup_logging()
    summary = decode_codes(exp_dir, codes_dir, out_dir, data)
    console.print(f"{summary['out']}: {summary['utterances']} utterances decoded")
