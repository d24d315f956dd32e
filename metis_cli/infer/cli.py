"""``metis resynth``: thin wrapper over metis_cli.infer.resynth."""
from pathlib import Path
from typing import Optional

import typer


def _settings(items: Optional[list[str]]) -> dict:
    from metis_cli.train.config import parse_override

    return dict(parse_override(item) for item in items or [])


def resynth(
    data_dir: Path = typer.Argument(..., help="Data dir with ssl_tokens/ and acoustic_codes/ (for the prompts)."),
    out_dir: Path = typer.Argument(..., help="Decode dir to write: wav/, wav.scp, prompt.scp, decode.json."),
    s2a: list[Path] = typer.Option(..., help="S2A experiment dir (repeat for a split model: coarse, then fine)."),
    codec: Path = typer.Option(..., help="Codec experiment dir."),
    stage1: Optional[Path] = typer.Option(None, help="Stage-1 experiment dir: generate the SSL tokens instead of using the ground truth."),
    prompt_seconds: float = typer.Option(3.0, help="Length of the acoustic prompt (from another utterance of the same speaker)."),
    no_prompt: bool = typer.Option(False, "--no-prompt", help="Decode without any prompt (unconditional)."),
    batch_size: int = typer.Option(8, help="Utterances decoded together."),
    seed: int = typer.Option(0),
    s2a_opt: Optional[list[str]] = typer.Option(None, help="S2A decoding setting, per codebook as a list: steps=[40,16,1] cfg_scale=[0,2.5] temperature=1.5."),
    stage1_opt: Optional[list[str]] = typer.Option(None, help="Stage-1 decoding setting: steps=25 cfg_scale=2.5 temperature=0.9."),
    two_pass_cfg: bool = typer.Option(False, "--two-pass-cfg", help="Run the guidance branches as two passes instead of one batch."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    bf16: bool = typer.Option(False, "--bf16", help="Run the transformers in bfloat16 (GPUs, CPUs with AMX/AVX512-BF16: 1.5-3.5x faster here)."),
) -> None:
    """Hear the stages: ground-truth (or stage-1 generated) SSL tokens -> S2A with a same-speaker prompt -> codec.

    Writes a decode dir that `metis score` reads (task resynth, or generate with --stage1).

    Examples:

      metis resynth data/mini/mini_test exp/s2a_mini/decode_mini_test --s2a exp/s2a_mini --codec exp/codec_mini

      metis resynth data/mini/mini_test exp/pretrain_mini/generate_mini_test --stage1 exp/pretrain_mini --s2a exp/s2a_mini --codec exp/codec_mini
    """
    from metis_cli.infer.resynth import resynthesize
    from metis_cli.log import console, setup_logging

    setup_logging(log_file=out_dir / "log" / "decode.log")
    result = resynthesize(data_dir, out_dir, s2a, codec, stage1, prompt_seconds, not no_prompt, batch_size, seed,
                          _settings(s2a_opt), _settings(stage1_opt), not two_pass_cfg, device, bf16)
    rtf = f", real-time factor {result['real_time_factor']:.3f}" if result["real_time_factor"] else ""
    console.print(f"{result['out']}: {result['utterances']} utterances ({result['decoded']} decoded now, {result['failed']} failed){rtf}")
    if result["failed"]:
        raise typer.Exit(1)
