"""The ``metis`` command: one Typer app, one sub-app or command per stage.

Sub-command modules import only typer at module level; numpy, soundfile and torch are imported inside
the commands, so ``metis --help`` stays fast.
"""

from typing import Optional

import typer

from metis_cli import __version__
from metis_cli.cli import convert as convert_cli
from metis_cli.cli import infer as infer_cli
from metis_cli.cli import score as score_cli
from metis_cli.cli import ssl as ssl_cli
from metis_cli.cli import tokenizer as tokenizer_cli
from metis_cli.cli import train as train_cli
from metis_cli.cli.codec import app as codec_app
from metis_cli.cli.common import MetisTyper
from metis_cli.cli.data import app as data_app

app = MetisTyper(
    name="metis",
    help=(
        "Train and run Metis (masked generative pre-training for speech generation) end to end.\n\n"
        "Examples:\n\n"
        "  metis data make-mini data/mini          # build the embedded corpus\n\n"
        "  metis data validate data/mini/mini_train\n\n"
        "  metis score exp/*/decode_* --nj 2\n\n"
        "  metis detect out.wav                   # was it generated (watermarked) by metis?\n\n"
        "  bash egs/tts/run.sh --stage 0 --stop-stage 0"
    ),
)


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the metis version and exit."
    ),
) -> None:
    pass


app.add_typer(data_app, name="data")
app.command("train-phonetic")(ssl_cli.train_phonetic)
app.command("extract-ssl")(ssl_cli.extract_ssl)
app.command("kmeans")(tokenizer_cli.kmeans)
app.command("train-vq")(tokenizer_cli.train_vq)
app.command("tokenize")(tokenizer_cli.tokenize)
app.command("token-report")(tokenizer_cli.token_report)
app.add_typer(codec_app, name="codec")
app.command("pretrain")(train_cli.pretrain)
app.command("train-s2a")(train_cli.train_s2a)
app.command("finetune")(train_cli.finetune)
app.command("export-adapter")(train_cli.export_adapter)
app.command("resynth")(infer_cli.resynth)
app.command("decode")(infer_cli.decode)
app.command("synth")(infer_cli.synth)
app.command("score")(score_cli.score)
app.command("results")(score_cli.results)
app.command("link-decode")(score_cli.link_decode)
app.command("detect")(score_cli.detect)
app.command("convert")(convert_cli.convert)


@app.command("tasks")
def tasks(
    name: Optional[str] = typer.Argument(None, help="One task; all of them when left out."),
    field: Optional[str] = typer.Option(
        None, help="Print only this field of NAME (empty when it has none), e.g. floor_scp, metrics."
    ),
) -> None:
    """What each task reads, how it is decoded and scored (the task registry).

    Examples:

      metis tasks

      metis tasks vc --field floor_scp        # what the recipes score as the unprocessed input
    """
    from dataclasses import fields

    from metis_cli.errors import MetisError
    from metis_cli.task_registry import TASKS, get_task

    names = [get_task(name).name] if name else list(TASKS)
    known = [f.name for f in fields(TASKS["tts"])] + ["synth_options"]
    if field is not None:
        if not name or field not in known:
            raise MetisError(f"--field needs a task NAME and one of {', '.join(known)}")
        value = getattr(TASKS[name], field)
        print(" ".join(value) if isinstance(value, tuple) else "" if value is None else value)
        return
    for n in names:
        t = TASKS[n]
        print(f"{n}: {t.summary}")
        for key in known[2:]:
            value = getattr(t, key)
            if value not in (None, (), {}, False):
                print(f"  {key}: {' '.join(value) if isinstance(value, tuple) else value}")


@app.command("version")
def version() -> None:
    """Print the metis version.

    Example: metis version
    """
    print(__version__)


def main() -> None:
    app()
