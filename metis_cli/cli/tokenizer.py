"""``metis kmeans``, ``metis train-vq``, ``metis tokenize``, ``metis token-report``: thin wrappers over
metis_cli.tokenizer."""

from pathlib import Path
from typing import Optional

import typer

from metis_cli.cli.common import CHECK_CONFIG, PRINT_CONFIG, run_trainer


def kmeans(
    feats_dir: Path = typer.Argument(..., help="Features from `metis extract-ssl`."),
    out_dir: Path = typer.Argument(..., help="Where kmeans.safetensors and kmeans.json go."),
    n_clusters: int = typer.Option(..., min=2, help="K (Metis: 8192)."),
    portion: float = typer.Option(0.1, min=1e-6, max=1.0, help="Share of the frames to learn from."),
    iters: int = typer.Option(20, min=1, help="Lloyd iterations."),
    seed: int = typer.Option(0),
    backend: str = typer.Option("auto", help="auto (faiss on GPU, torch on CPU), torch, faiss, sklearn."),
    max_frames: Optional[int] = typer.Option(None, help="Cap on the frames sampled."),
) -> None:
    """Learn k-means centroids on SSL features: the SSL tokenizer (stage 2).

    Example: metis kmeans exp/ssl/mini_train exp/kmeans_100 --n-clusters 100 --portion 0.5
    """
    from metis_cli.log import console, setup_logging
    from metis_cli.tokenizer.kmeans import train_kmeans

    setup_logging()
    config = train_kmeans(feats_dir, out_dir, n_clusters, portion, iters, seed, backend, max_frames)
    console.print(
        f"{out_dir}: {n_clusters} centroids from {config['points']} frames, backend {config['backend']}, "
        f"objective {config['objective'][0]:.4g} -> {config['objective'][-1]:.4g} ({config['seconds']:.1f} s)"
    )


def train_vq(
    feats_dir: Path = typer.Argument(..., help="Features from `metis extract-ssl` to train on."),
    exp_dir: Path = typer.Argument(
        ..., help="Experiment dir: resolved config, checkpoints, logs, metrics, and tokenizer/."
    ),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value overrides, e.g. train.max_steps=100 model.codebook_size=256."
    ),
    config: Path = typer.Option(..., help="YAML config (conf/mini/vq.yaml, conf/full/vq.yaml)."),
    val_feats: Optional[Path] = typer.Option(
        None, help="Held-out features for validation (reconstruction L1, codebook use)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the exp dir's earlier run first (needed to rerun it with another config)."
    ),
    print_config: bool = PRINT_CONFIG,
    check_config: bool = CHECK_CONFIG,
) -> None:
    """Train a VQ SSL tokenizer, the learned alternative to `metis kmeans` (stage 2).

    The model: a ConvNeXt encoder, one cosine-lookup codebook, a ConvNeXt decoder.

    Writes the tokenizer dir EXP_DIR/tokenizer (vq.safetensors + vq.json) for `metis tokenize --model`.
    Rerunning the same command resumes from the newest checkpoint and rewrites the tokenizer dir.
    Multi-GPU: torchrun --nproc_per_node 8 -m metis_cli train-vq exp/ssl/train exp/vq_full --config conf/full/vq.yaml

    Example: metis train-vq data/mini/ssl/builtin/mini_train exp/vq_mini --config conf/mini/vq.yaml --val-feats
    data/mini/ssl/builtin/mini_dev
    then: metis tokenize data/mini/mini_dev/ssl_tokens_vq --model exp/vq_mini/tokenizer --feats
    data/mini/ssl/builtin/mini_dev
    """
    from metis_cli.log import console
    from metis_cli.train.vq import resolve_vq_sections, train_vq

    result = run_trainer(
        config,
        overrides,
        resolve_vq_sections,
        exp_dir,
        lambda loaded: train_vq(loaded, exp_dir, feats_dir, val_feats),
        show=print_config,
        check=check_config,
        overwrite=overwrite,
        verbose=verbose,
    )
    if result and "tokenizer" in result:
        console.print(f"tokenizer: {result['tokenizer']}")


def tokenize(
    out_dir: Path = typer.Argument(..., help="Token folder, e.g. data/mini/mini_train/ssl_tokens."),
    model_dir: Path = typer.Option(
        ...,
        "--model",
        "--kmeans",
        help="Tokenizer dir: from `metis kmeans`, or EXP_DIR/tokenizer from `metis train-vq`.",
    ),
    tokenizer: str = typer.Option(
        "auto", help="auto (from the files in --model), kmeans or vq; a mismatch with --model is an error."
    ),
    feats: Optional[Path] = typer.Option(None, help="Stored features to assign."),
    data: Optional[Path] = typer.Option(
        None, help="Or a data dir: extract and assign in one pass, storing no features."
    ),
) -> None:
    """Assign SSL tokens: per-utterance arrays behind an index, plus a readable text.km.

    Example: metis tokenize data/mini/mini_dev/ssl_tokens --model exp/kmeans_100 --data data/mini/mini_dev
    VQ: metis tokenize data/mini/mini_dev/ssl_tokens_vq --model exp/vq_mini/tokenizer --tokenizer vq --feats
    data/mini/ssl/builtin/mini_dev
    """
    from metis_cli.log import console, setup_logging
    from metis_cli.tokenizer.tokenize import tokenize as run

    setup_logging()
    summary = run(out_dir, model_dir, feats_dir=feats, data_dir=data, tokenizer=tokenizer)
    console.print(
        f"{out_dir}: {summary['utterances']} utterances, {summary['frames']} tokens, {summary['failed']} failed"
    )


def token_report(
    tokens_dir: Path = typer.Argument(..., help="Token folder from `metis tokenize`."),
    phones: Optional[Path] = typer.Option(None, help="phones.ctm for purity and PNMI (the embedded corpus has one)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report here."),
) -> None:
    """Quality of SSL tokens: cluster usage, perplexity, phone purity, cluster purity, PNMI.

    Example: metis token-report data/mini/mini_dev/ssl_tokens --phones data/mini/mini_dev/phones.ctm
    """
    import json

    from rich.table import Table

    from metis_cli.log import console
    from metis_cli.tokenizer.quality import token_quality

    report = token_quality(tokens_dir, phones_ctm=phones)
    console.print(f"[bold]token quality[/] of {tokens_dir}", highlight=False)
    table = Table(show_header=False)
    for key, value in report.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
