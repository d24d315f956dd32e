"""``metis resynth``, ``metis decode`` and ``metis synth``: thin wrappers over metis_cli.infer."""

from pathlib import Path
from typing import Optional

import typer


def _settings(items: Optional[list[str]]) -> dict:
    from metis_cli.config import parse_override

    return dict(parse_override(item) for item in items or [])


def _options(stage1_opt, s2a_opt, no_watermark: bool = False, **settings):
    """The command's decoding options: ``--stage1-opt`` / ``--s2a-opt`` parsed, ``--no-watermark`` turned round."""
    from metis_cli.infer.options import DecodeOptions

    return DecodeOptions(stage1=_settings(stage1_opt), s2a=_settings(s2a_opt), watermark=not no_watermark, **settings)


CODEC_INPUT = typer.Option(
    "auto",
    help="What the codec decodes: codes (S2A's codes, as published), expected (the expected codebook vector under "
    "S2A's distributions; WORLD codec), auto (expected where the codec can).",
)


DEVICE = typer.Option("auto", help="auto (a GPU when one is visible, else the CPU), cpu, cuda or cuda:N.")
BF16 = typer.Option(
    None,
    "--bf16/--no-bf16",
    help="The transformers in bfloat16; default: where the hardware computes it (a GPU, a CPU with AMX or "
    "AVX512-BF16), float32 elsewhere.",
)
INT8 = typer.Option(
    False,
    "--int8",
    help="CPU only: the transformers' linear layers with int8 weights (dynamic quantisation; faster, tokens agree "
    "with float32 less often: bench/int8.py).",
)
PRESET = typer.Option(
    "published",
    help="Step counts: published, or fast (10 stage-1 steps, S2A steps [10,4,1]; measured in docs/benchmarks.md); "
    "--stage1-opt / --s2a-opt go over it.",
)
NO_WATERMARK = typer.Option(
    False,
    "--no-watermark",
    help="Do not watermark the outputs (warns: they could no longer be identified as generated).",
)
WATERMARK_KEY = typer.Option(
    None, help="Watermark key (default: $METIS_WATERMARK_KEY, else the public default; see metis detect)."
)
MODE = typer.Option(None, help="Omni models: the task to run (tts, vc, se or tse); single-task models run their own.")


def resynth(
    data_dir: Path = typer.Argument(..., help="Data dir with ssl_tokens/ and acoustic_codes/ (for the prompts)."),
    out_dir: Path = typer.Argument(..., help="Decode dir to write: wav/, wav.scp, prompt.scp, decode.json."),
    s2a: list[Path] = typer.Option(..., help="S2A experiment dir (repeat for a split model: coarse, then fine)."),
    codec: Path = typer.Option(..., help="Codec experiment dir."),
    stage1: Optional[Path] = typer.Option(
        None, help="Stage-1 experiment dir: generate the SSL tokens instead of using the ground truth."
    ),
    prompt_seconds: float = typer.Option(
        3.0, min=0.0, help="Length of the acoustic prompt (from another utterance of the same speaker)."
    ),
    no_prompt: bool = typer.Option(False, "--no-prompt", help="Decode without any prompt (unconditional)."),
    batch_size: int = typer.Option(8, min=1, help="Utterances decoded together."),
    seed: int = typer.Option(0),
    s2a_opt: Optional[list[str]] = typer.Option(
        None, help="S2A decoding setting, per codebook as a list: steps=[40,16,1] cfg_scale=[0,2.5] temperature=1.5."
    ),
    stage1_opt: Optional[list[str]] = typer.Option(
        None, help="Stage-1 decoding setting: steps=25 cfg_scale=2.5 temperature=0.9."
    ),
    device: str = DEVICE,
    bf16: Optional[bool] = BF16,
    int8: bool = INT8,
    preset: str = PRESET,
    oracle_codebooks: int = typer.Option(
        0,
        min=0,
        help="Diagnostic: take the first K codebooks from the utterance's own codes and generate only the rest.",
    ),
    codec_input: str = CODEC_INPUT,
) -> None:
    """Hear the stages: ground-truth (or stage-1 generated) SSL tokens -> S2A with a same-speaker prompt -> codec.

    Writes a decode dir that `metis score` reads (task resynth, or generate with --stage1).

    Examples:

      metis resynth data/mini/mini_test exp/s2a_resynth/mini_test --s2a exp/s2a_mini_vector --codec exp/codec_mini

      metis resynth data/mini/mini_test exp/pretrain_mini/generate_mini_test --stage1 exp/pretrain_mini --s2a
      exp/s2a_mini_vector --codec exp/codec_mini

      metis resynth data/mini/mini_test exp/s2a_mini/oracle1_mini_test --s2a exp/s2a_mini --codec exp/codec_mini
      --oracle-codebooks 1
    """
    from metis_cli.infer.resynth import resynthesize
    from metis_cli.log import console, setup_logging

    setup_logging(log_file=out_dir / "log" / "decode.log")
    options = _options(
        stage1_opt,
        s2a_opt,
        batch_size=batch_size,
        seed=seed,
        device=device,
        bf16=bf16,
        int8=int8,
        preset=preset,
        codec_input=codec_input,
    )
    result = resynthesize(
        data_dir,
        out_dir,
        s2a,
        codec,
        stage1,
        options,
        prompt_seconds=prompt_seconds,
        use_prompt=not no_prompt,
        oracle_codebooks=oracle_codebooks,
    )
    rtf = f", real-time factor {result['real_time_factor']:.3f}" if result["real_time_factor"] else ""
    console.print(
        f"{result['out']}: {result['utterances']} utterances ({result['decoded']} decoded now, {result['failed']} "
        f"failed){rtf}"
    )
    if result["failed"]:
        raise typer.Exit(1)


MODEL_HELP = "Experiment dir of the fine-tuned task model (`metis finetune`)."
S2A_HELP = "S2A experiment dir (repeat for a split model: coarse, then fine; default: those the model records)."
# Options that decode and synth share (Typer reads them as defaults; one declaration serves both).
STAGE1_OPT = typer.Option(
    None,
    help="Stage-1 decoding setting, e.g. steps=25 cfg_scale=2.5 temperature=0.9 (defaults per task: the reference's).",
)
S2A_OPT = typer.Option(
    None, help="S2A decoding setting, per codebook as a list: steps=[40,16,1] cfg_scale=[0,2.5] temperature=1.5."
)


def decode(
    data_dir: Path = typer.Argument(
        ...,
        help="Data dir with the task's inputs: text+prompt.scp (tts), src.scp+ref.scp (vc), noisy.scp (se), "
        "mix.scp+enroll.scp (tse), video.scp (or feats.scp)+prompt.scp (l2s).",
    ),
    task: str = typer.Option(
        ..., help="tts, vc, se, tse, l2s or omni (must be the task the model was fine-tuned for)."
    ),
    mode: Optional[str] = MODE,
    text_guided: bool = typer.Option(
        False,
        "--text-guided",
        help="Omni, vc/se/tse: the data's transcripts (text, and prompt_text when there) as the prefix too, e.g. "
        "text-guided TSE.",
    ),
    model: Path = typer.Option(..., help=MODEL_HELP),
    s2a: Optional[list[Path]] = typer.Option(None, help=S2A_HELP),
    codec: Optional[Path] = typer.Option(None, help="Codec experiment dir (default: the one the model records)."),
    out: Optional[Path] = typer.Option(None, help="Decode dir to write (default: <model>/decode_<set>)."),
    batch_size: int = typer.Option(8, min=1, help="Utterances decoded together."),
    nj: int = typer.Option(
        1,
        "--nj",
        min=1,
        help="Parallel decoding processes over the utterances (one per GPU when decoding on GPUs; each job "
        "seeds its own sampling, seed + job).",
    ),
    seed: int = typer.Option(0),
    stage1_opt: Optional[list[str]] = STAGE1_OPT,
    s2a_opt: Optional[list[str]] = S2A_OPT,
    device: str = DEVICE,
    bf16: Optional[bool] = BF16,
    int8: bool = INT8,
    preset: str = PRESET,
    no_watermark: bool = NO_WATERMARK,
    watermark_key: Optional[str] = WATERMARK_KEY,
    shuffle_video: bool = typer.Option(
        False,
        "--shuffle-video",
        help="l2s: scramble the video frames in time (the baseline that shows the model reads the lips).",
    ),
    codec_input: str = CODEC_INPUT,
    word_timings: bool = typer.Option(
        False,
        "--word-timings",
        help="tts, a model fine-tuned with text.frame_phones: place the phones by the data dir's words.ctm and "
        "make each output as long as its recording (utt2dur), instead of by mean durations (an oracle).",
    ),
) -> None:
    """Decode a data dir with a fine-tuned task model (stage 6): wav/*.wav, wav.scp, decode.json.

    Batched and resumable (a rerun skips written outputs); an utterance with bad inputs is logged in
    <out>/failed and skipped. The decode dir is what `metis score` reads.

    Example: metis decode data/mini/mini_se_test --task se --model exp/se_mini --s2a exp/s2a_mini_vector
             --codec exp/codec_mini
    Omni:    metis decode data/mini/mini_tse_test --task omni --mode tse --text-guided --model exp/omni_mini ...
    8 GPUs:  metis decode data/test --task tts --model exp/tts_full --nj 8
    """
    from metis_cli.infer.task_decode import decode_task
    from metis_cli.log import console, setup_logging

    out = out or model / f"decode_{mode + '_' if mode else ''}{'text_' if text_guided else ''}{data_dir.name}"
    setup_logging(log_file=out / "log" / "decode.log")
    options = _options(
        stage1_opt,
        s2a_opt,
        no_watermark,
        watermark_key=watermark_key,
        batch_size=batch_size,
        seed=seed,
        device=device,
        bf16=bf16,
        int8=int8,
        preset=preset,
        codec_input=codec_input,
    )
    result = decode_task(
        model,
        data_dir,
        out,
        s2a,
        codec,
        task,
        options,
        shuffle_video=shuffle_video,
        mode=mode,
        text_guided=text_guided,
        num_jobs=nj,
        word_timings=word_timings,
    )
    rtf = f", real-time factor {result['real_time_factor']:.3f}" if result["real_time_factor"] else ""
    console.print(
        f"{result['out']}: {result['utterances']} utterances ({result['decoded']} decoded now, {result['failed']} "
        f"failed){rtf}"
    )
    if result["failed"]:
        raise typer.Exit(1)


def synth(
    task: str = typer.Option(
        ..., help="tts, vc, se, tse, l2s or omni (the task is then chosen by the inputs given, or --mode)."
    ),
    mode: Optional[str] = MODE,
    model: Path = typer.Option(..., help=MODEL_HELP),
    s2a: Optional[list[Path]] = typer.Option(None, help=S2A_HELP),
    codec: Optional[Path] = typer.Option(None, help="Codec experiment dir (default: the one the model records)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .wav (written only when everything succeeded)."),
    text: Optional[str] = typer.Option(
        None, help="tts: the words to say; omni with --src/--noisy/--mix: the target's words (text-guided)."
    ),
    ref: Optional[Path] = typer.Option(
        None, help="tts: the voice prompt; vc, l2s: the reference voice; tse: the target speaker's enrollment."
    ),
    ref_text: Optional[str] = typer.Option(
        None, help="tts: transcript of --ref (default: recognised with the scoring ASR)."
    ),
    src: Optional[Path] = typer.Option(None, help="vc: the speech to convert (16 kHz mono)."),
    noisy: Optional[Path] = typer.Option(None, help="se: the noisy speech (16 kHz mono)."),
    mix: Optional[Path] = typer.Option(None, help="tse: the mixture (16 kHz mono)."),
    video: Optional[Path] = typer.Option(
        None, help="l2s: the mouth video (25 fps crop, e.g. 88x88), or visual features as .npy."
    ),
    duration: Optional[float] = typer.Option(
        None, help="tts: output length in seconds (default: the prompt's speaking rate)."
    ),
    seed: int = typer.Option(0),
    stage1_opt: Optional[list[str]] = STAGE1_OPT,
    s2a_opt: Optional[list[str]] = S2A_OPT,
    device: str = DEVICE,
    bf16: Optional[bool] = BF16,
    int8: bool = INT8,
    preset: str = PRESET,
    no_watermark: bool = NO_WATERMARK,
    watermark_key: Optional[str] = WATERMARK_KEY,
    codec_input: str = CODEC_INPUT,
) -> None:
    """Run a fine-tuned task model on single files (watermarked: check with metis detect).

    Examples (M="--s2a exp/s2a_mini_vector --codec exp/codec_mini"):

      metis synth --task tts --model exp/tts_mini $M --text "Hello there." --ref prompt.wav --ref-text "What the
      prompt says." -o out.wav

      metis synth --task vc --model exp/vc_mini $M --src a.wav --ref b.wav -o out.wav

      metis synth --task se --model exp/se_mini $M --noisy x.wav -o out.wav

      metis synth --task tse --model exp/tse_mini $M --mix m.wav --ref e.wav -o out.wav

      metis synth --task l2s --model exp/l2s_mini $M --video v.mp4 --ref speaker.wav -o out.wav
      metis synth --task omni --model exp/omni_mini $M --mix m.wav --ref e.wav --text "What the target says." -o out.wav
    """
    from metis_cli.errors import MetisError
    from metis_cli.infer.api import synthesize
    from metis_cli.infer.task_decode import TaskInput, load_input
    from metis_cli.log import console, setup_logging
    from metis_cli.task_registry import TASKS, get_task

    setup_logging()
    modes = get_task(task, fine_tuned=True).modes
    given = {
        "text": text,
        "ref": ref,
        "ref_text": ref_text,
        "src": src,
        "noisy": noisy,
        "mix": mix,
        "duration": duration,
        "video": video,
    }
    omni = bool(modes)
    if omni and mode is None:  # the mode whose condition is given, else the one that takes none (tts)
        given_conditions = [m for m in modes if TASKS[m].condition_option and given[TASKS[m].condition_option]]
        mode = next(iter(given_conditions), next(m for m in modes if not TASKS[m].condition_option))
    task_run = mode if omni else task
    spec = TASKS.get(task_run) if task_run in modes or not omni else None
    allowed = set(spec.synth_options) if spec else set()
    if omni and spec and not spec.text:  # text-guided vc, se, tse: the target's words (and the prompt's)
        allowed = allowed | {"text", "ref_text"}
    extra = sorted(k for k, v in given.items() if v is not None and k not in allowed)
    asked = f"--task {task}" + (f" --mode {task_run}" if omni else "")
    if extra:
        raise MetisError(
            f"{asked} takes {', '.join('--' + a.replace('_', '-') for a in sorted(allowed))}, not "
            f"{', '.join('--' + e.replace('_', '-') for e in extra)}"
        )
    condition_option = spec.condition_option if spec else None
    condition = given.get(condition_option)
    if condition_option and condition is None:
        raise MetisError(f"{asked} needs --{condition_option}")
    item = TaskInput(output.stem, text=text, duration=duration)
    if spec and spec.video:
        from metis_cli.video import read_visual_input

        item.visual = read_visual_input(video, features=video.suffix == ".npy")
    elif condition is not None:
        item.condition = load_input(condition, spec.condition_name, strict=True)
    if ref is not None:
        item.prompt = load_input(ref, "reference", strict=False)
    if spec and spec.text and ref is None:
        raise MetisError(f"{asked} needs --ref (a recording of the voice to speak with)")
    if (spec and spec.text) or (text is not None and ref is not None):  # the prompt's words go before the text
        if ref_text is None:
            from metis_cli.score.models import load_asr

            ref_text = load_asr("pocketsphinx").transcribe(item.prompt)
            console.print(f"transcript of {ref} (give --ref-text to set it): {ref_text!r}")
        item.prompt_text = ref_text
    options = _options(
        stage1_opt,
        s2a_opt,
        no_watermark,
        watermark_key=watermark_key,
        seed=seed,
        device=device,
        bf16=bf16,
        int8=int8,
        preset=preset,
        codec_input=codec_input,
    )
    result = synthesize(model, s2a, codec, output, item, task, options, mode=mode if omni else None)
    console.print(
        f"{result['out']}: {result['seconds_audio']:.2f} s of audio in {result['seconds']:.1f} s "
        f"(real-time factor {result['real_time_factor']:.2f})"
    )
