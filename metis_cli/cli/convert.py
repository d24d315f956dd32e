"""``metis convert``: a thin wrapper over metis_cli.convert.convert."""

from pathlib import Path
from typing import Optional

import typer


def convert(
    src: Path = typer.Argument(..., help="Folder with the published files (searched recursively)."),
    dst: Path = typer.Option(..., "--to", help="New folder: one experiment dir per converted model."),
    source: str = typer.Option("amphion", "--from", help="Who published the files: amphion (MaskGCT, Metis)."),
    ssl_model: Optional[str] = typer.Option(
        None, help="Local w2v-BERT 2.0 folder, written into the task models' configs."
    ),
    n_heads: int = typer.Option(
        16, help="Attention heads of the transformers (not stored in the files; published: 16)."
    ),
    lora_rank: Optional[int] = typer.Option(
        None, help="Expected LoRA rank (default: the published one per task: vc 16, se/tse 32)."
    ),
    lora_alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default: the published one, 2 x rank)."),
    force: bool = typer.Option(False, "--force", help="Replace DST if it exists."),
) -> None:
    """Convert published MaskGCT / Metis weights into experiment dirs this toolkit decodes and fine-tunes.

    Recognises each *.safetensors file by its keys (semantic codec, acoustic codec encoder and decoder,
    stage-1 models with and without text prefix or adapter, S2A models, LoRA + adapter files), the
    w2v-BERT stats (*stats*.pt) and the G2P phone table (vocab.json). LoRA is merged into the weights.
    Nothing is written unless every file converts.

    Example: metis convert ckpt/amphion --to exp/published --ssl-model /models/w2v-bert-2.0

    Then: metis synth --task vc --model exp/published/vc --s2a exp/published/s2a_coarse --s2a exp/published/s2a_fine
    --codec exp/published/codec --src a.wav --ref b.wav -o out.wav
    """
    from metis_cli.convert.convert import SOURCES, convert_amphion
    from metis_cli.errors import MetisError
    from metis_cli.log import console, setup_logging

    setup_logging()
    if source not in SOURCES:
        raise MetisError(f"--from {source}: unknown; known: {', '.join(SOURCES)}")
    written = convert_amphion(
        src, dst, n_heads=n_heads, ssl_model=ssl_model, lora_rank=lora_rank, lora_alpha=lora_alpha, force=force
    )
    for name, what in written.items():
        console.print(f"{dst}/{name}: {what}", highlight=False)
