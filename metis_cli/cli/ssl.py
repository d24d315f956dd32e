"""``metis train-phonetic``, ``metis extract-ssl``: thin wrappers over metis_cli.train.phonetic and
metis_cli.ssl.extract (stage 1)."""

from pathlib import Path
from typing import Optional

import typer

from metis_cli.cli.common import CHECK_CONFIG, PRINT_CONFIG, run_trainer


def train_phonetic(
    data_dir: Path = typer.Argument(..., help="Kaldi data dir with phones.ctm (phone timings) to learn from."),
    exp_dir: Path = typer.Argument(..., help="Experiment dir: resolved config, checkpoints, logs, and model/."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value overrides, e.g. train.max_steps=200 model.bottleneck_dim=64."
    ),
    config: Path = typer.Option(..., help="YAML config (conf/mini/phonetic.yaml)."),
    dev: Optional[Path] = typer.Option(None, help="Held-out data dir with phones.ctm for validation."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the exp dir's earlier run first (needed to rerun it with another config)."
    ),
    print_config: bool = PRINT_CONFIG,
    check_config: bool = CHECK_CONFIG,
) -> None:
    """Train the phonetic front end, the small-corpus stand-in for w2v-BERT 2.0 (stage 1).

    A dilated-convolution frame classifier on MFCC learns each 20 ms frame's phone part from phones.ctm;
    its bottleneck is the SSL feature (docs/phonetic_ssl.md). Writes EXP_DIR/model for
    `metis extract-ssl --extractor EXP_DIR/model`. Rerunning the same command resumes.

    Example: metis train-phonetic data/mini/mini_train exp/phonetic_mini --config conf/mini/phonetic.yaml
    --dev data/mini/mini_dev
    then: metis extract-ssl data/mini/mini_train data/mini/ssl/phonetic/mini_train --extractor exp/phonetic_mini/model
    """
    from metis_cli.log import console
    from metis_cli.train.phonetic import resolve_phonetic_config, train_phonetic

    result = run_trainer(
        config,
        overrides,
        resolve_phonetic_config,
        exp_dir,
        lambda loaded: train_phonetic(loaded, exp_dir, data_dir, dev),
        show=print_config,
        check=check_config,
        overwrite=overwrite,
        verbose=verbose,
    )
    if result and "model" in result:
        console.print(f"model: {result['model']}")


def extract_ssl(
    data_dir: Path = typer.Argument(..., help="Kaldi data dir."),
    out_dir: Path = typer.Argument(..., help="Feature folder (sharded, resumable)."),
    extractor: str = typer.Option(
        "builtin",
        help="'builtin' (MFCC+deltas, no weights), a phonetic front end (`metis train-phonetic`'s EXP_DIR/model) "
        "or a local w2v-BERT 2.0 / HuBERT / WavLM dir.",
    ),
    layer: Optional[int] = typer.Option(
        None, help="hidden_states index for model dirs (0 = embeddings; Metis: 17 of w2v-BERT 2.0)."
    ),
    nj: int = typer.Option(1, min=1, help="Parallel jobs (processes); one per GPU on GPU machines."),
    stats: Optional[Path] = typer.Option(None, help="Use these mean/var stats instead of computing them."),
    stats_utts: int = typer.Option(200, min=1, help="Utterances the stats are computed on."),
    seed: int = typer.Option(0, help="Seed of the stats subset."),
    chunk_seconds: float = typer.Option(
        30.0, min=1.0, help="Longer audio runs through the model in chunks of this length."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Extract normalised SSL features for every utterance of a data dir (stage 1).

    One bad utterance is skipped and listed in OUT_DIR/failed; a killed run resumes.

    Example: metis extract-ssl data/mini/mini_train exp/ssl/mini_train --nj 2
    """
    from metis_cli.log import console, setup_logging
    from metis_cli.ssl.extract import extract_ssl as run

    setup_logging(verbose, log_file=out_dir / "log" / "extract_ssl.log")
    summary = run(
        data_dir, out_dir, extractor, layer, nj, str(stats) if stats else None, stats_utts, seed, chunk_seconds
    )
    console.print(
        f"{out_dir}: {summary['utterances']} utterances, {summary['frames']} frames x {summary['dim']} dims, "
        f"{summary['failed']} failed ({summary['seconds']:.1f} s)"
    )
