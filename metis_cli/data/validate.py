"""Checks a Kaldi data dir and, on request, repairs what can be repaired without losing a line.

Errors (the dir is unusable): a missing required file, a file that is not UTF-8, duplicate ids, a line
without a value, an empty transcript, ids that differ between files, utt2spk/spk2utt disagreeing, a
file not sorted under ``LC_ALL=C``, utt2spk not sorted by speaker too, audio that is missing or does
not decode. Warnings (usable, but worth knowing): several sample rates or multi-channel audio.
``fix_datadir`` sorts every table and rebuilds spk2utt; duplicates and bad encodings it leaves for a
person, because choosing which line to drop would lose data.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from metis_cli.data.datadir import (
    AUDIO_SCPS,
    RECORDING_KEYED,
    REQUIRED,
    SPEAKER_KEYED,
    DataDir,
    atomic_write_text,
    format_ctm,
    format_ids,
    format_table,
    read_ctm,
    read_lines,
    sort_key,
    spk2utt_from_utt2spk,
)
from metis_cli.errors import DataDirError


@dataclass
class Problem:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class ValidationReport:
    path: Path
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    num_utts: int = 0
    num_speakers: int = 0
    durations: list[float] = field(default_factory=list)
    sample_rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, file: str, message: str) -> None:
        self.errors.append(Problem(file, message))

    def warn(self, file: str, message: str) -> None:
        self.warnings.append(Problem(file, message))

    def summary(self) -> dict:
        d = self.durations
        return {
            "utterances": self.num_utts,
            "speakers": self.num_speakers,
            "hours": round(sum(d) / 3600, 4),
            "min_duration": round(min(d), 3) if d else None,
            "mean_duration": round(sum(d) / len(d), 3) if d else None,
            "max_duration": round(max(d), 3) if d else None,
            "sample_rates": dict(self.sample_rates),
            "channels": dict(self.channels),
        }


def _read_checked(dd: DataDir, name: str, report: ValidationReport) -> dict[str, str] | None:
    """Reads one table, reporting encoding, duplicate, empty-value and order problems."""
    try:
        lines = read_lines(dd.file(name))
    except DataDirError as exc:
        report.error(name, str(exc).removeprefix(f"{dd.file(name)}: "))
        return None
    table: dict[str, str] = {}
    first: dict[str, int] = {}
    for line in lines:
        if line.key in table:
            report.error(name, f"line {line.number}: duplicate id '{line.key}' (first on line {first[line.key]})")
            continue
        if not line.value:
            what = "empty transcript" if name == "text" else "no value"
            report.error(name, f"line {line.number}: id '{line.key}' has {what}")
        table[line.key] = line.value
        first[line.key] = line.number
    keys = [line.key for line in lines]
    for prev, cur, line in zip(keys, keys[1:], lines[1:], strict=False):
        if sort_key(cur) < sort_key(prev):
            report.error(
                name, f"line {line.number}: not sorted ('{cur}' after '{prev}'); run with --fix or sort with LC_ALL=C"
            )
            break
    return table


def _check_ids(name: str, ids, expected: set[str], what: str, report: ValidationReport, exact: bool) -> None:
    ids = set(ids)
    unknown = ids - expected
    if unknown:
        report.error(name, f"{len(unknown)} unknown {what} id(s) not in the reference file: {format_ids(unknown)}")
    missing = expected - ids
    if exact and missing:
        report.error(name, f"{len(missing)} {what} id(s) missing: {format_ids(missing)}")


def _check_audio(dd: DataDir, utts: set[str], report: ValidationReport) -> None:
    """Decodes every audio source of wav.scp (the summary's numbers) and of the task input scps."""
    from metis_cli.audio import audio_info, load_audio
    from metis_cli.errors import AudioError
    from metis_cli.log import progress

    for scp in AUDIO_SCPS:
        if not dd.has(scp):
            continue
        try:
            sources = dd.audio_sources(scp)
        except DataDirError as exc:
            report.error("segments" if scp == "wav.scp" else scp, str(exc))
            continue
        with progress() as bar:
            task = bar.add_task(f"decoding {dd.path}/{scp}", total=len(sources))
            for utt, (source, start, end) in sources.items():
                bar.advance(task)
                if utt not in utts:
                    continue
                try:
                    info = audio_info(source, utt_id=utt, commands=True)
                    # Decoding every sample is what catches a truncated file whose header looks fine.
                    wav, sr = load_audio(source, start=start, end=end, utt_id=utt, commands=True)
                except AudioError as exc:
                    report.error(scp, str(exc))
                    continue
                if end is not None and end > info.duration + 0.01:
                    report.error(
                        "segments",
                        f"utterance '{utt}': ends at {end:.2f} s, after the end of its recording "
                        f"({info.duration:.2f} s)",
                    )
                if scp == "wav.scp":
                    report.sample_rates[sr] += 1
                    report.channels[info.channels] += 1
                    report.durations.append(len(wav) / sr)
    if len(report.sample_rates) > 1:
        report.warn(
            "wav.scp",
            f"several sample rates {dict(report.sample_rates)}; loaders resample to the rate each stage asks for",
        )
    if any(ch > 1 for ch in report.channels):
        report.warn("wav.scp", f"multi-channel audio {dict(report.channels)}; loaders downmix to mono")


def validate_datadir(path, check_audio: bool = True) -> ValidationReport:
    """Checks the data dir at ``path`` and returns what it found; never modifies anything."""
    dd = DataDir(path)
    report = ValidationReport(Path(path))
    if not dd.path.is_dir():
        report.error(str(path), "data dir not found")
        return report
    for name in REQUIRED:
        if not dd.has(name):
            report.error(name, "required file missing")
    if not dd.has("utt2spk"):
        return report

    tables = {name: _read_checked(dd, name, report) for name in dd.table_names()}
    utt2spk = tables.get("utt2spk") or {}
    utts = set(utt2spk)
    report.num_utts = len(utts)
    report.num_speakers = len(set(utt2spk.values()))

    by_speaker = sorted(utt2spk, key=lambda u: (sort_key(utt2spk[u]), sort_key(u)))
    if by_speaker != sorted(utt2spk, key=sort_key):
        report.error(
            "utt2spk",
            "utterances sorted by id are not also sorted by speaker; prefix each utterance id with its speaker id",
        )

    has_segments = tables.get("segments") is not None
    recordings = {value.split()[0] for value in (tables.get("segments") or {}).values() if value}
    for name, table in tables.items():
        if table is None or name == "utt2spk":
            continue
        if name == "spk2utt":
            if table != spk2utt_from_utt2spk(utt2spk):
                report.error("spk2utt", "does not match utt2spk; run with --fix to rebuild it")
        elif name in SPEAKER_KEYED:
            _check_ids(name, table, set(utt2spk.values()), "speaker", report, exact=False)
        elif name in RECORDING_KEYED or (name == "wav.scp" and has_segments):
            _check_ids(name, table, recordings, "recording", report, exact=True)
        else:
            exact = name in ("wav.scp", "text", "segments") or name.startswith("utt2")
            _check_ids(name, table, utts, "utterance", report, exact=exact)

    for name in dd.ctm_names():
        try:
            timings = read_ctm(dd.file(name))
        except DataDirError as exc:
            report.error(name, str(exc).removeprefix(f"{dd.file(name)}: "))
            continue
        _check_ids(name, timings, utts, "utterance", report, exact=False)
        durations = tables.get("utt2dur") or {}
        for utt, items in timings.items():
            if utt in durations and items and items[-1].end > float(durations[utt]) + 0.05:
                report.error(
                    name,
                    f"utterance '{utt}': timings end at {items[-1].end:.2f} s, after its duration {durations[utt]} s",
                )

    for name in ("video.scp", "feats.scp"):  # lip-to-speech inputs: the files must exist (decoded when used)
        missing = [u for u, p in (tables.get(name) or {}).items() if not Path(p).is_file()]
        if missing:
            report.error(
                name, f"{len(missing)} file(s) not found, e.g. utterance '{missing[0]}': {tables[name][missing[0]]}"
            )

    if check_audio:
        _check_audio(dd, utts, report)
    return report


def fix_datadir(path) -> list[str]:
    """Sorts every table and ctm file and rebuilds spk2utt; the originals go to ``<dir>/.backup/<time>/``.

    Refuses (raises) when a file has duplicate ids or is not UTF-8: those need a person's decision.
    Returns the names of the files that changed.
    """
    dd = DataDir(path)
    if not dd.has("utt2spk"):
        raise DataDirError(f"{dd.file('utt2spk')}: file not found; cannot fix a data dir without utt2spk")
    tables = {name: dd.read(name) for name in dd.table_names() if name != "spk2utt"}
    ctms = {name: read_ctm(dd.file(name)) for name in dd.ctm_names()}
    tables["spk2utt"] = spk2utt_from_utt2spk(tables["utt2spk"])

    backup = dd.path / ".backup" / time.strftime("%Y%m%d-%H%M%S")
    wanted = {name: format_table(table) for name, table in tables.items()}
    wanted.update({name: format_ctm(timings) for name, timings in ctms.items()})
    changed = [name for name, text in wanted.items() if not dd.has(name) or dd.file(name).read_bytes() != text.encode()]
    if not changed:
        return []
    backup.mkdir(parents=True, exist_ok=True)
    for name in changed:
        if dd.has(name):
            shutil.copy2(dd.file(name), backup / name)
        atomic_write_text(dd.file(name), wanted[name])
    return changed
