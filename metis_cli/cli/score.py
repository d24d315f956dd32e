"""``metis score``, ``metis results`` and ``metis link-decode``: thin wrappers over metis_cli.score."""

from pathlib import Path
from typing import Optional

import typer

METRIC_HELP = "Only these metric groups (comma separated): wer, sim, sim_other, dnsmos, pesq, stoi, sisdr, mcd."


SHORT_NAMES = {"dnsmos_sig": "sig", "dnsmos_bak": "bak", "dnsmos_ovrl": "ovrl", "dnsmos_p808": "p808"}


def _print_comparison(summaries: list[dict]) -> None:
    """One row per decode dir, one column per metric: mean±95% CI."""
    import math

    from rich.table import Table

    from metis_cli.log import console

    names: list[str] = []
    for s in summaries:
        names += [n for n in s["metrics"] if n not in names]
    # As many metric columns per table as fit beside the decode dir: a wide table would squeeze every column
    # (the decode dir first) into ellipses; more metrics go into a second table with the same rows.
    dir_width = min(max([len(s["decode_dir"]) for s in summaries] + [10]), 48)
    room = console.width - (dir_width + 4) - (8 + 3) - (7 + 3) - 1
    chunks: list[list[str]] = [[]]
    used = 0
    for name in names:
        width = max(len(SHORT_NAMES.get(name, name)), 6) + 3
        if chunks[-1] and used + width > room:
            chunks.append([])
            used = 0
        chunks[-1].append(name)
        used += width
    for number, chunk in enumerate(chunks):
        title = (
            "scores: mean and ±95% CI (WER, CER in %; sig/bak/ovrl/p808: DNSMOS)"
            if number == 0
            else "scores, continued"
        )
        table = Table(title=title, title_justify="left")
        table.add_column("decode dir", overflow="fold", min_width=dir_width)
        table.add_column("task", no_wrap=True, min_width=8)
        table.add_column("scored", justify="right", no_wrap=True, min_width=7)
        for name in chunk:
            table.add_column(SHORT_NAMES.get(name, name), justify="right", no_wrap=True)
        for s in summaries:
            cells = []
            for name in chunk:
                m = s["metrics"].get(name)
                digits = 1 if name in ("wer", "cer", "sisdr", "mcd") else 2
                if m is None:
                    cells.append("-")
                else:
                    ci = "" if math.isnan(m["ci95"]) else f"\n[dim]±{m['ci95']:.{digits}f}[/]"
                    cells.append(f"{m['mean']:.{digits}f}{ci}")
            counts = s["counts"]
            scored = f"{counts['scored']}/{counts['references']}" if not s.get("error") else "[red]error[/]"
            table.add_row(s["decode_dir"], s.get("task") or "-", scored, *cells)
        console.print(table)
    for s in summaries:
        if s.get("error"):
            console.print(f"[red]failed[/] {s['decode_dir']}: {s['error']}", highlight=False, soft_wrap=True)
        elif s["counts"]["failed"]:
            first = s["failures"][0]
            console.print(
                f"[yellow]{s['counts']['failed']} failed[/] in {s['decode_dir']} (e.g. {first['utt']}: "
                f"{first['reason']}); "
                f"see {s['decode_dir']}/scores/result.txt",
                highlight=False,
                soft_wrap=True,
            )


def score(
    decode_dirs: list[Path] = typer.Argument(..., help="Decode dirs (each with decode.json and wav.scp)."),
    nj: int = typer.Option(1, min=1, help="Parallel scoring processes."),
    asr: str = typer.Option(
        "pocketsphinx", help="'pocketsphinx' or a local transformers ASR model dir (Whisper, CTC)."
    ),
    sim: str = typer.Option("resemblyzer", help="'resemblyzer' or a local transformers x-vector model dir (WavLM SV)."),
    metrics: Optional[str] = typer.Option(None, help=METRIC_HELP),
    report: bool = typer.Option(True, help="Write scores/report.html (audio players, spectrograms, plots)."),
    report_utts: int = typer.Option(20, min=0, help="Utterances shown in the report (and the comparison page)."),
    compare: Optional[Path] = typer.Option(
        None,
        help="The page comparing the dirs (default with several dirs and --report: compare.html in their common "
        "parent dir).",
    ),
    baseline: Optional[Path] = typer.Option(
        None, help="The decode dir the others are compared with, utterance by utterance (paired differences)."
    ),
    worst: Optional[str] = typer.Option(
        None, help="The comparison page lists utterances worst first by this metric (default: wer where scored)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score decode dirs: WER/CER, speaker similarity, DNSMOS, PESQ/STOI/SI-SDR/MCD where they apply.

    Writes scores/per_utt.tsv, summary.json, result.txt (and report.html) in each dir, reuses what an
    earlier run computed, and prints one table comparing all dirs; with several dirs, one comparison page
    (players side by side, paired differences against --baseline, the worst utterances first). Exits 1 only
    if nothing could be scored.

    Example: metis score exp/*/decode_* --nj 2

    Compare: metis score egs/tts/exp/*/decode_mini_test --baseline egs/tts/exp/s2a_resynth/decode_mini_test
    """
    from metis_cli.errors import MetisError
    from metis_cli.log import setup_logging
    from metis_cli.score.scoring import METRICS, Scorers, check_scorers, score_decode_dir

    setup_logging(verbose)
    chosen = None
    if metrics:
        chosen = [m.strip() for m in metrics.split(",") if m.strip()]
        unknown = sorted(set(chosen) - set(METRICS))
        if unknown:
            raise MetisError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    scorers = Scorers(asr=asr, sim=sim)
    check_scorers(scorers, chosen)
    summaries = []
    for decode_dir in decode_dirs:
        summary = score_decode_dir(decode_dir, scorers, num_jobs=nj, metrics=chosen)
        if report and not summary.get("error"):
            from metis_cli.score.report import write_report

            write_report(decode_dir, max_utts=report_utts)
        summaries.append(summary)
    _print_comparison(summaries)
    if not any(s["counts"]["scored"] for s in summaries):
        raise MetisError("nothing could be scored")
    if baseline is not None and baseline.resolve() not in [d.resolve() for d in decode_dirs]:
        raise MetisError(f"--baseline {baseline} is not one of the decode dirs scored")
    scored = [d for d, s in zip(decode_dirs, summaries, strict=True) if not s.get("error")]
    if compare is None and report and len(scored) > 1:
        import os

        compare = Path(os.path.commonpath([str(d.resolve()) for d in scored])) / "compare.html"
    if compare is not None:
        from metis_cli.log import console
        from metis_cli.score.compare import write_comparison

        page = write_comparison(scored, compare, baseline=baseline, worst=worst, max_utts=report_utts)
        console.print(f"comparison of {len(scored)} decode dirs: {page}")


def results(
    decode_dirs: list[Path] = typer.Argument(..., help="Scored decode dirs (scores/summary.json)."),
    output: Path = typer.Option(Path("RESULTS.md"), "--output", "-o", help="Markdown file to write."),
    title: str = typer.Option("Results", help="Heading of the file."),
    stage_times: Optional[Path] = typer.Option(
        None, help="A recipe's stage_times.tsv: adds the time of each stage and the recipe commands."
    ),
) -> None:
    """Write RESULTS.md: one table per task and test set, the exact commands, and the environment.

    Example: metis results exp/*/decode_* -o egs/tts/RESULTS.md --title "TTS on the embedded corpus"
    """
    from metis_cli.log import console
    from metis_cli.score.results import write_results

    path = write_results(decode_dirs, output, title=title, stage_times=stage_times)
    console.print(f"wrote {path}")


def link_decode(
    data_dir: Path = typer.Argument(..., help="Data dir whose audio becomes the outputs."),
    out_dir: Path = typer.Argument(..., help="New decode dir."),
    task: str = typer.Option(..., help="tts, vc, se, tse, l2s, resynth or generate: decides the metrics."),
    scp: str = typer.Option(
        "wav.scp", help="wav.scp (ground truth: the ceiling) or an input such as noisy.scp (the floor)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing decode dir at OUT_DIR."),
) -> None:
    """Make a decode dir from audio a data dir already has, to score ground truth and raw inputs.

    Example: metis link-decode data/mini/mini_se_test exp/baselines/se_noisy --task se --scp noisy.scp
    """
    from metis_cli.data.decode_dir import link_decode_dir
    from metis_cli.log import console

    decode = link_decode_dir(data_dir, out_dir, task, scp, overwrite)
    console.print(f"{decode.path}: {len(decode.outputs())} outputs ({scp} of {data_dir}), task {task}")


def detect(
    files: Optional[list[Path]] = typer.Argument(None, help="Audio files to check."),
    scp: Optional[Path] = typer.Option(None, help="A wav.scp to check instead (or as well): every utterance in it."),
    key: Optional[str] = typer.Option(
        None, help="Watermark key (default: $METIS_WATERMARK_KEY, else the public default)."
    ),
    threshold: float = typer.Option(
        1e-3, min=0.0, max=1.0, help="Watermarked when the p-value (false-alarm probability) is below this."
    ),
    tsv: Optional[Path] = typer.Option(None, help="Also write the table as TSV."),
) -> None:
    """Is this audio generated by metis? Looks for the watermark that metis decode/synth put in every output.

    Per file: a score (about exponential with mean 1 on unmarked audio), its p-value (the probability that
    unmarked audio scores this high), yes/no at --threshold, and the payload (4 hex digits: 4d = metis,
    then a byte naming the model). Under 0.75 s of active audio gives "no verdict". A wrong key gives "no".

    Example: metis detect out.wav other.flac --tsv detect.tsv;  metis detect --scp exp/tts_mini/decode_mini_test/wav.scp
    """
    import csv

    from rich.table import Table

    from metis_cli.data.datadir import read_table
    from metis_cli.errors import MetisError
    from metis_cli.log import console
    from metis_cli.watermark import WatermarkConfig, detect_sources, resolve_key

    sources = {str(f): str(f) for f in files or []}
    scp_entries = read_table(scp) if scp is not None else {}
    sources.update(scp_entries)
    if not sources:
        raise MetisError("nothing to check: give audio files or --scp wav.scp")
    rows = detect_sources(sources, WatermarkConfig(key=resolve_key(key), threshold_p=threshold), frozenset(scp_entries))
    table = Table(title=f"watermark detection (watermarked when p < {threshold:g})", title_justify="left")
    for column in ("file", "seconds", "score", "p-value", "watermarked", "payload", "weakest bit", "note"):
        table.add_column(
            column,
            justify="right" if column in ("seconds", "score", "p-value", "weakest bit") else "left",
            overflow="fold",
        )
    colour = {"yes": "green", "no": "default", "no verdict": "yellow", "error": "red"}
    for r in rows:
        table.add_row(
            r["name"],
            "-" if r["seconds"] is None else f"{r['seconds']:.2f}",
            "-" if r["score"] is None else f"{r['score']:.1f}",
            "-" if r["p_value"] is None else f"{r['p_value']:.1e}",
            f"[{colour[r['watermarked']]}]{r['watermarked']}[/]",
            r["payload"] or "-",
            "-" if r["weakest_bit"] is None else f"{r['weakest_bit']:.1f}",
            r["note"],
        )
    console.print(table)
    if tsv is not None:
        with open(tsv, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            fields = ("seconds", "score", "p_value", "watermarked", "payload", "weakest_bit", "note")
            writer.writerow(["file", *fields])
            for r in rows:
                writer.writerow([r["name"], *("" if r[k] is None else r[k] for k in fields)])
    errors = [r for r in rows if r["watermarked"] == "error"]
    if errors:
        raise MetisError(f"{len(errors)} of {len(rows)} file(s) could not be read, e.g. {errors[0]['note']}")
