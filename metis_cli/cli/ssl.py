"""``metis extract-ssl``: a thin wrapper over metis_cli.ssl.extract."""

from pathlib import Path
from typing import Optional

import typer


def extract_ssl(
    data_dir: Path = typer.Argument(..., help="Kaldi data dir."),
    out_dir: Path = typer.Argument(..., help="Feature folder (sharded, resumable)."),
    extractor: str = typer.Option(
        "builtin", help="'builtin' (MFCC+deltas, no weights) or a local w2v-BERT 2.0 / HuBERT / WavLM dir."
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
