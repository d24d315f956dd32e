"""Scores decode dirs: per-utterance metrics, cached between runs, and a summary with confidence intervals.

Writes, per decode dir, ``scores/per_utt.tsv`` (one row per reference utterance: the metrics, or the
reason it failed), ``scores/summary.json`` and ``scores/result.txt``. A rerun computes only what is
missing: utterances whose output changed since the last run, and metrics not yet computed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metis_cli.data.decode_dir import DecodeDir, other_speaker_references
from metis_cli.env import command_line
from metis_cli.errors import MetisError
from metis_cli.task_registry import TASKS

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
METRIC_COLUMNS = {
    "wer": ("hyp_text", "word_errors", "ref_words", "word_subs", "word_dels", "word_ins", "char_errors", "ref_chars"),
    "sim": ("sim",),
    "sim_other": ("sim_other",),
    "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"),
    "pesq": ("pesq_wb", "pesq_nb"),
    "stoi": ("stoi", "estoi"),
    "sisdr": ("sisdr",),
    "mcd": ("mcd",),
}
METRICS = tuple(METRIC_COLUMNS)
# Output that is this quiet is silence; this share of samples at full scale is clipping.
SILENCE_PEAK = 1e-4
CLIPPED_SHARE = 0.01


@dataclass(frozen=True)
class Scorers:
    """Which models score: ASR and speaker-embedding specs (see metis_cli.score.models)."""

    asr: str = "pocketsphinx"
    sim: str = "resemblyzer"


@dataclass(frozen=True)
class UttJob:
    utt: str
    output: str
    metrics: tuple[str, ...]
    text: str | None = None
    reference: str | None = None
    speaker_reference: str | None = None
    expected_sample_rate: int | None = None
    other_speaker_reference: str | None = None


def _load_16k(source: str, utt: str) -> np.ndarray:
    from metis_cli.audio import load_audio

    return load_audio(source, SAMPLE_RATE, utt_id=utt, commands=True)[0]


def check_output(wav: np.ndarray) -> str | None:
    """Why an output cannot be scored (silent, clipped), or None."""
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK:
        return f"silent output (peak {peak:.1e})"
    clipped = float(np.mean(np.abs(wav) >= 0.999))
    if clipped > CLIPPED_SHARE:
        return f"clipped output ({100 * clipped:.1f}% of samples at full scale)"
    return None


def score_utterance(job: UttJob, scorers: Scorers) -> dict:
    """One row: the requested metrics of one output, or ``failure`` saying why there are none.

    A metric that fails on its own (e.g. PESQ finding no speech) leaves its cells empty and says why
    in ``notes``; the other metrics still count.
    """
    from metis_cli.audio import audio_info
    from metis_cli.errors import AudioError
    from metis_cli.score import metrics as M
    from metis_cli.score import models

    row: dict = {"utt": job.utt, "failure": "", "notes": ""}
    try:
        rate = audio_info(job.output, utt_id=job.utt, commands=True).sample_rate
        if job.expected_sample_rate and rate != job.expected_sample_rate:
            return {**row, "failure": f"sample rate {rate} Hz, decode.json says {job.expected_sample_rate} Hz"}
        wav = _load_16k(job.output, job.utt)
    except AudioError as exc:
        return {**row, "failure": str(exc)}
    problem = check_output(wav)
    if problem:
        return {**row, "failure": problem}

    notes = []
    reference = None
    for metric in job.metrics:
        try:
            if metric == "wer":
                hyp = models.load_asr(scorers.asr).transcribe(wav)
                row.update({"hyp_text": " ".join(hyp.split()), **M.word_and_char_errors(job.text or "", hyp)})
            elif metric == "sim":
                model = models.load_speaker_model(scorers.sim)
                target = _load_16k(job.speaker_reference, job.utt)
                row["sim"] = models.cosine(model.embed(wav), model.embed(target))
            elif metric == "sim_other":
                model = models.load_speaker_model(scorers.sim)
                other = _load_16k(job.other_speaker_reference, job.utt)
                row["sim_other"] = models.cosine(model.embed(wav), model.embed(other))
            elif metric == "dnsmos":
                row.update(models.load_dnsmos()(wav))
            else:
                if reference is None:
                    reference = _load_16k(job.reference, job.utt)
                if metric == "pesq":
                    row.update(M.pesq_scores(reference, wav))
                elif metric == "stoi":
                    row.update(M.stoi_scores(reference, wav))
                elif metric == "sisdr":
                    row["sisdr"] = M.si_sdr(reference, wav)
                elif metric == "mcd":
                    row["mcd"] = M.mcd(reference, wav)
        except Exception as exc:  # one metric failing must not lose the others
            notes.append(f"{metric}: {type(exc).__name__}: {exc}".replace("\t", " ").replace("\n", " "))
    row["notes"] = "; ".join(notes)
    return row


def _columns(metrics) -> list[str]:
    return ["utt", "failure", "notes"] + [c for m in metrics for c in METRIC_COLUMNS[m]]


def read_per_utt(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["utt"]: row for row in csv.DictReader(f, delimiter="\t")}


def write_per_utt(path: Path, rows: dict[str, dict], metrics) -> None:
    columns = _columns(metrics)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, delimiter="\t", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for utt in sorted(rows):
            writer.writerow({c: _format(rows[utt].get(c, "")) for c in columns})
    tmp.replace(path)


def _format(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _missing(row: dict | None, metric: str) -> bool:
    return row is None or bool(row.get("failure")) or any(row.get(c, "") in ("", None) for c in METRIC_COLUMNS[metric])


def _count_word_error_kinds(rows: dict[str, dict], texts: dict[str, str]) -> None:
    """Rows scored before substitutions, deletions and insertions were counted get them from their stored
    hypothesis (no ASR run again)."""
    from metis_cli.score import metrics as M

    for utt, row in rows.items():
        if row.get("word_errors") not in ("", None) and row.get("word_subs", "") in ("", None) and utt in texts:
            counts = M.word_and_char_errors(texts[utt], row.get("hyp_text") or "")
            row.update({k: counts[k] for k in ("word_subs", "word_dels", "word_ins")})


def _changed_since(source: str, stamp: float) -> bool:
    path = Path(source)
    return not path.is_file() or path.stat().st_mtime > stamp


def plan_jobs(
    decode: DecodeDir, metrics, previous: dict[str, dict], stamp: float
) -> tuple[list[UttJob], dict[str, dict], int]:
    """Jobs for what must be computed, failure rows for what cannot be scored at all, and the number
    of reference utterances."""
    outputs = decode.outputs()
    texts = decode.reference("text")
    references = decode.reference("wav.scp")
    speaker_scp = TASKS[decode.task].speaker_reference_scp
    speaker_refs = decode.reference(speaker_scp) if speaker_scp else {}
    other_refs = other_speaker_references(decode) if "sim_other" in metrics else {}
    expected_ids = list(decode.data.utt2spk) if decode.data.has("utt2spk") else list(outputs)
    failures: dict[str, dict] = {}
    jobs = []
    for utt in expected_ids:
        if utt not in outputs:
            failures[utt] = {"utt": utt, "failure": "no output for this utterance in wav.scp", "notes": ""}
            continue
        wanted = []
        for metric in metrics:
            if (metric == "wer" and utt not in texts) or (metric == "sim" and utt not in speaker_refs):
                continue
            if metric == "sim_other" and utt not in other_refs:
                continue
            if metric in ("pesq", "stoi", "sisdr", "mcd") and utt not in references:
                continue
            wanted.append(metric)
        changed = _changed_since(outputs[utt], stamp)
        todo = tuple(m for m in wanted if changed or _missing(previous.get(utt), m))
        if todo:
            jobs.append(
                UttJob(
                    utt,
                    outputs[utt],
                    todo,
                    texts.get(utt),
                    references.get(utt),
                    speaker_refs.get(utt),
                    decode.info.get("sample_rate"),
                    other_refs.get(utt),
                )
            )
    known = set(expected_ids)
    for utt in outputs:
        if utt not in known:
            failures[utt] = {"utt": utt, "failure": f"not an utterance of {decode.data_dir}", "notes": ""}
    return jobs, failures, len(expected_ids)


def _init_worker() -> None:
    import torch

    from metis_cli.score import models

    torch.set_num_threads(1)
    models.THREADS = 1


def run_jobs(jobs: list[UttJob], scorers: Scorers, num_jobs: int, description: str):
    """Yields rows as they finish, with a progress bar; ``num_jobs`` processes (1: in this process)."""
    from metis_cli.log import progress

    with progress() as bar:
        task = bar.add_task(description, total=len(jobs))
        if num_jobs <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield score_utterance(job, scorers)
                bar.advance(task)
            return
        with ProcessPoolExecutor(num_jobs, initializer=_init_worker) as pool:
            futures = [pool.submit(score_utterance, job, scorers) for job in jobs]
            for future in as_completed(futures):
                yield future.result()
                bar.advance(task)


def _ci95(values: np.ndarray) -> float:
    return float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def _ratio_with_bootstrap(
    errors: np.ndarray, totals: np.ndarray, seed: int = 0, rounds: int = 1000
) -> tuple[float, float]:
    """Corpus-level error rate (%) and the half width of its 95% bootstrap interval over utterances."""
    rate = 100 * errors.sum() / max(totals.sum(), 1)
    if len(errors) < 2:
        return float(rate), math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(errors), size=(rounds, len(errors)))
    samples = 100 * errors[picks].sum(axis=1) / np.maximum(totals[picks].sum(axis=1), 1)
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(rate), float((high - low) / 2)


def summarize(rows: dict[str, dict], metrics) -> dict:
    """Means and 95% confidence half-widths per metric (WER/CER: corpus level, bootstrap interval)."""
    scored = [r for r in rows.values() if not r.get("failure")]
    summary: dict[str, dict] = {}
    for metric in metrics:
        if metric == "wer":
            rates = (
                ("wer", "word_errors", "ref_words"),
                ("cer", "char_errors", "ref_chars"),
                # the word errors split: substitutions, deletions, insertions (each per reference word, so
                # the three add up to the WER); absent for rows scored before they were counted
                ("wer_sub", "word_subs", "ref_words"),
                ("wer_del", "word_dels", "ref_words"),
                ("wer_ins", "word_ins", "ref_words"),
            )
            for name, err, tot in rates:
                pairs = np.array(
                    [(_number(r.get(err)), _number(r.get(tot))) for r in scored], dtype=np.float64
                ).reshape(-1, 2)
                pairs = pairs[~np.isnan(pairs).any(axis=1)]
                if len(pairs):
                    rate, ci = _ratio_with_bootstrap(pairs[:, 0], pairs[:, 1])
                    summary[name] = {"mean": rate, "ci95": ci, "n": int(len(pairs))}
            continue
        for column in METRIC_COLUMNS[metric]:
            values = np.array([_number(r.get(column)) for r in scored], dtype=np.float64)
            values = values[~np.isnan(values)]
            if len(values):
                summary[column] = {"mean": float(values.mean()), "ci95": _ci95(values), "n": int(len(values))}
    return summary


def _result_text(summary: dict) -> str:
    lines = [f"decode dir: {summary['decode_dir']}", f"task: {summary['task']}    data: {summary['data_dir']}"]
    counts = summary["counts"]
    lines.append(f"scored {counts['scored']} of {counts['references']} references ({counts['failed']} failed)")
    for name, m in summary["metrics"].items():
        ci = "" if math.isnan(m["ci95"]) else f" ± {m['ci95']:.3f}"
        lines.append(f"{name:<12} {m['mean']:9.3f}{ci}  (n={m['n']})")
    for failure in summary["failures"][:50]:
        lines.append(f"failed {failure['utt']}: {failure['reason']}")
    return "\n".join(lines) + "\n"


# What made a metric's cached values when scorers.json does not say: MCD values without a record are the
# earlier frame-by-frame ones.
UNRECORDED = {"mcd": "mcd"}


def scorer_identity(metric: str, scorers: Scorers) -> str:
    """What a metric's values depend on besides the audio: the ASR model for WER, the speaker model for SIM."""
    if metric == "wer":
        return f"asr:{scorers.asr}"
    if metric in ("sim", "sim_other"):
        return f"sim:{scorers.sim}"
    if metric == "mcd":  # values of the earlier frame-by-frame MCD (no time alignment) are computed again
        return "mcd:world-dtw"
    return metric


def check_scorers(scorers: Scorers, metrics=None) -> None:
    """Loads the ASR and speaker models the metrics need, so that a missing or broken one stops the run before
    anything is scored (one line naming it), instead of leaving every WER or SIM cell empty."""
    from metis_cli.score import models

    wanted = set(METRICS if metrics is None else metrics)
    for needed, what, spec, load in (
        (wanted & {"wer"}, "ASR", scorers.asr, models.load_asr),
        (wanted & {"sim", "sim_other"}, "speaker", scorers.sim, models.load_speaker_model),
    ):
        if not needed:
            continue
        try:
            load(spec)
        except MetisError:
            raise
        except Exception as exc:  # a model dir that exists but does not load
            raise MetisError(
                f"{what} model '{spec}' cannot be loaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); "
                f"give a working local model dir"
            ) from None


def _scorer_record(scores: Path) -> dict[str, str]:
    """Which scorer made each metric's cached values (scores/scorers.json; older dirs: summary.json's scorers)."""
    record = scores / "scorers.json"
    try:
        if record.is_file():
            return json.loads(record.read_text())
        summary = json.loads((scores / "summary.json").read_text()) if (scores / "summary.json").is_file() else {}
    except ValueError:
        return {}
    old = summary.get("scorers") or {}
    return (
        {m: scorer_identity(m, Scorers(old["asr"], old["sim"])) for m in ("wer", "sim", "sim_other")}
        if "asr" in old and "sim" in old
        else {}
    )


def score_decode_dir(path, scorers: Scorers = Scorers(), num_jobs: int = 1, metrics=None) -> dict:
    """Scores one decode dir (see the module doc) and returns its summary.

    A decode dir that cannot be read at all (no decode.json, no wav.scp) gives a summary with
    ``error`` set and nothing scored; it raises only if the directory does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        raise MetisError(f"{path}: decode dir not found")
    scores = path / "scores"
    scores.mkdir(exist_ok=True)
    started = time.time()
    summary: dict = {
        "decode_dir": str(path),
        "task": None,
        "data_dir": None,
        "metrics": {},
        "failures": [],
        "counts": {"references": 0, "outputs": 0, "scored": 0, "failed": 0},
        "error": None,
    }
    try:
        decode = DecodeDir.load(path)
        summary.update(task=decode.task, data_dir=str(decode.data_dir), set=decode.set_name)
        chosen = [m for m in TASKS[decode.task].metrics if metrics is None or m in metrics]
        per_utt = scores / "per_utt.tsv"
        previous = read_per_utt(per_utt)
        made_by = _scorer_record(scores)
        # values another ASR or speaker model made are recomputed with this one, not relabelled
        stale = [
            m
            for m in chosen
            if made_by.get(m, UNRECORDED.get(m, scorer_identity(m, scorers))) != scorer_identity(m, scorers)
        ]
        for row in previous.values():
            for m in stale:
                for column in METRIC_COLUMNS[m]:
                    row[column] = ""
        _count_word_error_kinds(previous, decode.reference("text"))
        stamp = per_utt.stat().st_mtime if per_utt.is_file() else 0.0
        jobs, failures, summary["counts"]["references"] = plan_jobs(decode, chosen, previous, stamp)
        summary["counts"]["outputs"] = len(decode.outputs())
    except MetisError as exc:
        summary["error"] = str(exc)
        summary["failures"] = [{"utt": "*", "reason": str(exc)}]
        (scores / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (scores / "result.txt").write_text(f"decode dir: {path}\nnothing scored: {exc}\n")
        return summary

    rows = {u: r for u, r in previous.items() if u not in failures}
    for row in run_jobs(jobs, scorers, num_jobs, f"scoring {path}"):
        # A failure replaces the whole row: values from an earlier run no longer describe this output.
        rows[row["utt"]] = row if row["failure"] else {**rows.get(row["utt"], {}), **row}
    rows.update(failures)
    # Metrics an earlier run computed stay in the table (and the summary) even if not asked for now.
    present = {c for r in previous.values() for c, v in r.items() if v}
    made_by.update({m: scorer_identity(m, scorers) for m in chosen})  # what this run was asked for
    chosen = [m for m in TASKS[decode.task].metrics if m in chosen or present & set(METRIC_COLUMNS[m])]
    write_per_utt(scores / "per_utt.tsv", rows, chosen)
    (scores / "scorers.json").write_text(json.dumps(made_by, indent=2) + "\n")
    # Summaries come from the table as written (sorted, rounded), so a rerun or another --nj gives
    # exactly the same numbers.
    rows = read_per_utt(scores / "per_utt.tsv")

    failed = {u: r["failure"] for u, r in rows.items() if r.get("failure")}
    summary["metrics"] = summarize(rows, chosen)
    summary["failures"] = [{"utt": u, "reason": reason} for u, reason in sorted(failed.items())]
    summary["counts"].update(scored=len(rows) - len(failed), failed=len(failed))
    summary["scorers"] = {
        "asr": scorers.asr,
        "sim": scorers.sim,
        "dnsmos": "speechmos ONNX (P.835 + P.808)",
        "per_metric": made_by,
    }
    summary["command"] = command_line()
    summary["seconds"] = round(time.time() - started, 1)
    (scores / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (scores / "result.txt").write_text(_result_text(summary))
    return summary
