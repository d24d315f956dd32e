"""``metis data``: build, check, subset and split Kaldi data dirs."""

from pathlib import Path
from typing import Optional

import typer

from metis_cli.cli.common import MetisTyper

app = MetisTyper(
    help=(
        "Kaldi data dirs: build the embedded corpus, validate, subset, split.\n\n"
        "Example: metis data make-mini data/mini && metis data validate data/mini/*"
    )
)


def _print_reports(reports) -> None:
    """One row per data dir, then every error and warning in full."""
    from rich.table import Table

    from metis_cli.log import console

    table = Table(title="data dir validation", title_justify="left")
    for column in ("data dir", "status", "utts", "spks", "hours", "dur min/mean/max (s)", "sample rates"):
        table.add_column(column, justify="left" if column in ("data dir", "status") else "right")
    for report in reports:
        s = report.summary()
        durations = (
            "-"
            if s["min_duration"] is None
            else f"{s['min_duration']:.2f}/{s['mean_duration']:.2f}/{s['max_duration']:.2f}"
        )
        status = "[green]ok[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]"
        rates = ", ".join(f"{sr} Hz" for sr in sorted(s["sample_rates"])) or "-"
        table.add_row(
            str(report.path), status, str(s["utterances"]), str(s["speakers"]), f"{s['hours']:.3f}", durations, rates
        )
    console.print(table)
    for report in reports:
        for problem in report.errors:
            console.print(f"[red]error[/] {report.path}/{problem}", highlight=False, soft_wrap=True)
        for problem in report.warnings:
            console.print(f"[yellow]warning[/] {report.path}/{problem}", highlight=False, soft_wrap=True)


@app.command("validate")
def validate(
    data_dirs: list[Path] = typer.Argument(..., help="One or more data dirs."),
    fix: bool = typer.Option(False, "--fix", help="Sort every file and rebuild spk2utt (originals kept in .backup/)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Skip decoding the audio (faster)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the summaries to this JSON file."),
) -> None:
    """Check data dirs: sorted (LC_ALL=C), unique and consistent ids, audio that exists and decodes.

    Prints a duration and sample-rate summary per dir; exits 1 if any dir has an error.

    Example: metis data validate data/mini/mini_train data/mini/mini_test --fix
    """
    import json

    from metis_cli.data.validate import fix_datadir, validate_datadir
    from metis_cli.errors import MetisError
    from metis_cli.log import console

    reports = []
    for data_dir in data_dirs:
        if fix:
            changed = fix_datadir(data_dir)
            if changed:
                console.print(f"{data_dir}: fixed {', '.join(changed)} (originals in {data_dir}/.backup/)")
        reports.append(validate_datadir(data_dir, check_audio=not no_audio))
    _print_reports(reports)
    summaries = {
        str(r.path): {**r.summary(), "errors": [str(p) for p in r.errors], "warnings": [str(p) for p in r.warnings]}
        for r in reports
    }
    failed = [str(r.path) for r in reports if not r.ok]
    if json_out is not None:
        json_out.write_text(json.dumps(summaries, indent=2) + "\n")
    if failed:
        raise MetisError(f"{len(failed)} of {len(data_dirs)} data dir(s) failed validation: {', '.join(failed)}")


@app.command("subset")
def subset(
    src: Path = typer.Argument(..., help="Source data dir."),
    dst: Path = typer.Argument(..., help="New data dir."),
    first: Optional[int] = typer.Option(None, help="The first N utterances."),
    last: Optional[int] = typer.Option(None, help="The last N utterances."),
    random_n: Optional[int] = typer.Option(None, "--random", help="N utterances drawn at random (see --seed)."),
    seed: int = typer.Option(0, help="Seed for --random."),
    utt_list: Optional[Path] = typer.Option(None, help="A file of utterance ids (first column)."),
    spk_list: Optional[Path] = typer.Option(None, help="A file of speaker ids (first column)."),
    overwrite: bool = typer.Option(False, help="Replace DST if it already holds a data dir."),
) -> None:
    """Copy part of a data dir: every file restricted to the chosen utterances and their speakers.

    Example: metis data subset data/mini/mini_train data/mini/train_100 --random 100 --seed 1
    """
    from metis_cli.data.datadir import DataDir
    from metis_cli.data.subset import select_utts, subset_datadir
    from metis_cli.log import console

    utts = select_utts(DataDir(src), first, last, random_n, seed, utt_list, spk_list)
    out = subset_datadir(src, dst, utts, overwrite=overwrite)
    console.print(f"{out.path}: {len(utts)} utterances, {len(out.speakers())} speakers")


@app.command("split")
def split(
    src: Path = typer.Argument(..., help="Data dir to split."),
    num_jobs: int = typer.Argument(..., help="Number of parts."),
    by: str = typer.Option("utt", help="'utt': equal utterance counts; 'spk': whole speakers per part."),
) -> None:
    """Split a data dir into N parts for parallel jobs: SRC/split<N><by>/<1..N>.

    Example: metis data split data/mini/mini_train 4 --by spk
    """
    from metis_cli.data.subset import split_datadir
    from metis_cli.log import console

    for part in split_datadir(src, num_jobs, by=by):
        console.print(f"{part.path}\t{len(part.utt_ids())} utterances\t{len(part.speakers())} speakers")


@app.command("make-mini")
def make_mini(
    out_dir: Path = typer.Argument(Path("data/mini"), help="Where the corpus goes."),
    size: str = typer.Option(
        "default",
        help="'default' (16 speakers, ~830 utterances, ~45 min), 'large' (the default's dev and test, 36 training "
        "speakers, ~4,900 training utterances, no mouth videos) or 'tiny' (CI: 6 speakers, 22 utterances).",
    ),
    seed: int = typer.Option(0, help="Seed of every random choice; the same seed gives the same corpus."),
    nj: int = typer.Option(2, min=1, help="Parallel synthesis jobs."),
    videos: bool = typer.Option(
        True, help="Render the mouth videos (lip-to-speech); a rerun with --videos adds them to a corpus made without."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesise the embedded multi-speaker English corpus and its SE, TSE and VC test sets.

    Speech comes from Debian's flite and festival voices; sox perturbations derive further speakers.
    Writes mini_train, mini_dev (seen speakers), mini_test (held-out speakers) and
    mini_{se,tse,vc}_{dev,test}. Reruns reuse finished utterances.

    Example: metis data make-mini data/mini --size tiny --nj 2

    More training speech (8.5x the default's): metis data make-mini data/mini_large --size large --nj 2
    """
    from metis_cli.corpus.mini import make_mini_corpus
    from metis_cli.log import console, setup_logging

    setup_logging(verbose, log_file=out_dir / "log" / "make_mini.log")
    from rich.table import Table

    result = make_mini_corpus(out_dir, size=size, seed=seed, num_jobs=nj, videos=videos)
    table = Table(title=f"embedded corpus ({size}, seed {seed})", title_justify="left")
    for column in ("data dir", "utterances", "speakers", "minutes"):
        table.add_column(column, justify="left" if column == "data dir" else "right")
    for name, info in result.items():
        table.add_row(str(out_dir / name), str(info["utterances"]), str(info["speakers"]), f"{info['minutes']:.1f}")
    console.print(table)


@app.command("prepare")
def prepare(
    corpus: str = typer.Argument(..., help="librispeech, libritts, vctk, dns, libri2mix or lrs3."),
    corpus_dir: Path = typer.Argument(..., help="Your copy of the corpus, in its published layout."),
    out_dir: Path = typer.Argument(..., help="Where the data dirs train, dev and test go."),
    train_parts: Optional[str] = typer.Option(
        None, help="Space-separated training parts (default: every part named train*; lrs3: trainval)."
    ),
    dev_part: Optional[str] = typer.Option(None, help="Dev part (librispeech/libritts: dev-clean; libri2mix: dev)."),
    test_part: Optional[str] = typer.Option(
        None, help="Test part (librispeech/libritts: test-clean; libri2mix, lrs3: test)."
    ),
    test_speakers: int = typer.Option(8, min=1, help="vctk: hold out the last N speakers for the VC test set."),
    dev_fraction: float = typer.Option(
        0.02, min=0.0, max=0.5, help="vctk, dns, lrs3 (no dev part): this share of each speaker's training utterances."
    ),
    mixture: str = typer.Option("mix_clean", help="libri2mix: mix_clean or mix_both (mixtures with noise)."),
    transcripts: Optional[Path] = typer.Option(None, help="libri2mix: a LibriSpeech copy to take the texts from."),
    seed: int = typer.Option(0, help="Seed of the prompt, enrollment and reference choices."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Kaldi data dirs from a corpus you bring: OUT/train, OUT/dev (clean speech) and OUT/test (held-out
    speakers with the task's inputs: prompt.scp, src.scp + ref.scp, noisy.scp, mix.scp + enroll.scp, video.scp).

    Layouts read (see metis_cli/corpus/prepare.py): LibriSpeech/LibriTTS <part>/<spk>/<chapter>/;
    VCTK wav48_silence_trimmed/ + txt/; DNS datasets/clean/ + test_set/synthetic/no_reverb/;
    Libri2Mix wav16k/min/<part>/{mix_clean,s1,s2}/; LRS3 <part>/<spk>/<clip>.{mp4,txt}.
    Run metis data validate on the result (a recipe's stage 0 does both).

    Example: metis data prepare libritts /corpora/LibriTTS data/libritts --train-parts "train-clean-100 train-clean-360"
    """
    from rich.table import Table

    from metis_cli.corpus.prepare import PrepareOptions, prepare_corpus
    from metis_cli.log import console, setup_logging

    setup_logging(verbose, log_file=out_dir / "log" / "prepare.log")
    options = PrepareOptions(
        train_parts=train_parts.split() if train_parts else None,
        dev_part=dev_part,
        test_part=test_part,
        test_speakers=test_speakers,
        dev_fraction=dev_fraction,
        mixture=mixture,
        transcripts=transcripts,
        seed=seed,
    )
    sets = prepare_corpus(corpus, corpus_dir, out_dir, options)
    table = Table(title=f"{corpus} from {corpus_dir}", title_justify="left")
    for column in ("data dir", "utterances", "speakers", "task inputs"):
        table.add_column(column, justify="right" if column in ("utterances", "speakers") else "left")
    for dd in sets.values():
        inputs = [n for n in dd.table_names() if n.endswith(".scp") and n != "wav.scp"]
        table.add_row(str(dd.path), str(len(dd.utt_ids())), str(len(dd.speakers())), " ".join(inputs) or "-")
    console.print(table)


@app.command("shard")
def shard(
    data_dirs: list[Path] = typer.Argument(..., help="Data dirs whose token data to shard (e.g. every training part)."),
    out: Path = typer.Option(..., "--out", "-o", help="Shard dir to write (shard-NNNNNN.tar + .lengths, shards.json)."),
    kinds: list[str] = typer.Option(
        ["ssl_tokens", "acoustic_codes"], "--kind", help="Arrays to put in the shards (repeat)."
    ),
    shard_mb: float = typer.Option(256.0, min=0.001, help="Target size of one shard in MB."),
    seed: int = typer.Option(
        0, help="Utterances are shuffled across shards with this seed (Kaldi dirs are sorted by speaker)."
    ),
    no_shuffle: bool = typer.Option(False, "--no-shuffle", help="Keep the sorted order (shards then group speakers)."),
) -> None:
    """Write webdataset tar shards of token data for streamed training (pre-training, S2A).
    Give the shard dir as --train-data of metis pretrain / train-s2a: each rank reads its own shards
    through a shuffle buffer; a resumed run continues at the same batch. Data dirs stay the way for
    small sets and for fine-tuning.
    Example: metis data shard data/train_* --out data/shards/train --shard-mb 512
    """
    from metis_cli.data.shards import write_shards
    from metis_cli.log import console, setup_logging

    setup_logging()
    index = write_shards(data_dirs, out, kinds, shard_mb, None if no_shuffle else seed)
    console.print(
        f"{out}: {index['utterances']} utterances, {index['frames'] / 50 / 3600:.2f} h, {len(index['shards'])} shard(s)"
    )
