"""Kaldi data dirs: one folder of text tables keyed by utterance (or speaker, or recording) id.

A table file holds one ``<id> <value>`` line per key: ``wav.scp``, ``text``, ``utt2spk``, ``utt2dur``,
``segments`` and any task input ``<name>.scp`` (``noisy.scp``, ``enroll.scp``, ...). ``spk2utt`` maps a
speaker to its utterances. ``*.ctm`` files (phone or word timings) hold several lines per utterance:
``<utt> 1 <start> <duration> <token>``. Files are written sorted by id (byte order, as ``LC_ALL=C sort``
does) and atomically.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from metis_cli.errors import DataDirError
from metis_cli.files import umask_mode, write_failure

SPEAKER_KEYED = ("spk2utt", "spk2gender")
RECORDING_KEYED = ("reco2dur", "reco2file_and_channel")
# Task inputs that hold audio sources like wav.scp does (validated by decoding them too).
AUDIO_SCPS = ("wav.scp", "noisy.scp", "mix.scp", "enroll.scp", "interferer.scp", "src.scp", "ref.scp", "prompt.scp")
# Files that must cover exactly the utterances of utt2spk (Kaldi's rule); other *.scp files may cover
# a subset, e.g. a transcript-free pre-training set.
REQUIRED = ("wav.scp", "utt2spk")


@dataclass(frozen=True)
class Line:
    number: int
    key: str
    value: str


@dataclass(frozen=True)
class Segment:
    recording: str
    start: float
    end: float


@dataclass(frozen=True)
class TimedToken:
    start: float
    duration: float
    token: str

    @property
    def end(self) -> float:
        return self.start + self.duration


def id_problem(key: str) -> str | None:
    """Why ``key`` cannot be an id (ids become file names: <utt>.wav, shard names), or None."""
    if not key:
        return "is empty"
    if any(c.isspace() or not c.isprintable() for c in key):
        return "contains whitespace or control characters"
    if "/" in key or "\\" in key or ".." in key:
        return "contains '/', '\\' or '..'"
    if key.startswith("-"):
        return "starts with '-'"
    return None


def check_id(key: str, where: str = "") -> str:
    """``key`` if it can name a file; else a DataDirError that says why and what to do."""
    problem = id_problem(key)
    if problem:
        raise DataDirError(
            f"{where + ': ' if where else ''}id {key!r} {problem}; ids name files, so rename it "
            f"(letters, digits, '_', '-', '.'; no '/', '..', leading '-' or whitespace)"
        )
    return key


def id_path(directory: Path, key: str, suffix: str = "") -> Path:
    """``directory / (key + suffix)`` for an id checked to name a file inside ``directory``."""
    return Path(directory) / f"{check_id(key)}{suffix}"


def read_lines(path: Path) -> list[Line]:
    """Parses a table file without judging it (duplicates and order are kept for the validator)."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataDirError(
            f"{path}: line {line_no}: not valid UTF-8 (byte {exc.object[exc.start]:#x}); re-encode the file as UTF-8"
        ) from None
    lines = []
    for number, raw in enumerate(content.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            raise DataDirError(f"{path}: line {number}: empty line")
        key, _, value = stripped.partition(" ")
        if "\t" in key:
            key, _, rest = key.partition("\t")
            value = f"{rest} {value}".strip()
        check_id(key, f"{path}: line {number}")
        lines.append(Line(number, key, value.strip()))
    return lines


def read_table(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """``<id> <value>`` lines as an ordered dict; duplicate ids or a missing value raise."""
    table: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line in read_lines(path):
        if line.key in table:
            raise DataDirError(
                f"{path}: line {line.number}: duplicate id '{line.key}' (first on line {first_seen[line.key]})"
            )
        if not line.value and not allow_empty_value:
            raise DataDirError(f"{path}: line {line.number}: id '{line.key}' has no value")
        table[line.key] = line.value
        first_seen[line.key] = line.number
    return table


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataDirError(write_failure(path, exc)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sort_key(key: str) -> bytes:
    """The order of ``LC_ALL=C sort``: bytes of the UTF-8 encoding."""
    return key.encode("utf-8")


def format_table(table: dict[str, str]) -> str:
    """The file content of a table: ``<id> <value>`` lines sorted by id."""
    for key in table:
        check_id(key)
    return "".join(f"{key} {table[key]}".rstrip() + "\n" for key in sorted(table, key=sort_key))


def write_table(path: Path, table: dict[str, str]) -> Path:
    """Writes ``<id> <value>`` lines sorted by id; atomic. Returns the path."""
    try:
        text = format_table(table)
    except DataDirError as exc:
        raise DataDirError(f"{path}: {exc}") from None
    atomic_write_text(Path(path), text)
    return Path(path)


def read_ctm(path: Path) -> dict[str, list[TimedToken]]:
    """``<utt> <channel> <start> <duration> <token>`` lines grouped by utterance, in time order."""
    timings: dict[str, list[TimedToken]] = {}
    for line in read_lines(path):
        fields = line.value.split()
        try:
            _, start, duration, token = fields
            item = TimedToken(float(start), float(duration), token)
        except ValueError:
            raise DataDirError(
                f"{path}: line {line.number}: expected '<utt> <channel> <start> <duration> <token>'"
            ) from None
        timings.setdefault(line.key, []).append(item)
    for items in timings.values():
        items.sort(key=lambda t: t.start)
    return timings


def format_ctm(timings: dict[str, list[TimedToken]]) -> str:
    """The file content of a ctm: utterances sorted by id, tokens in time order, millisecond precision."""
    return "".join(
        f"{utt} 1 {t.start:.3f} {t.duration:.3f} {t.token}\n"
        for utt in sorted(timings, key=sort_key)
        for t in sorted(timings[utt], key=lambda t: t.start)
    )


def write_ctm(path: Path, timings: dict[str, list[TimedToken]]) -> Path:
    atomic_write_text(Path(path), format_ctm(timings))
    return Path(path)


def contiguous_parts(items: list, num_parts: int) -> list[list]:
    """``items`` cut into ``num_parts`` contiguous runs of (nearly) equal length, in order."""
    bounds = [round(j * len(items) / num_parts) for j in range(num_parts + 1)]
    return [items[bounds[j] : bounds[j + 1]] for j in range(num_parts)]


def format_ids(ids, limit: int = 5) -> str:
    """A few ids for an error message: "'a', 'b' and 7 more"."""
    ids = sorted(ids, key=sort_key)
    shown = ", ".join(f"'{i}'" for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, str]:
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk, key=sort_key):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utt.items()}


class DataDir:
    """A Kaldi data dir on disk. Tables are read on demand; writing keeps them sorted."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DataDir('{self.path}')"

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    def table_names(self) -> list[str]:
        """Every table file present (not ctm files, not hidden files, not sub-folders)."""
        if not self.path.is_dir():
            raise DataDirError(f"{self.path}: data dir not found")
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".ctm") and p.name != "README"
        )

    def ctm_names(self) -> list[str]:
        return sorted(p.name for p in self.path.glob("*.ctm"))

    def read(self, name: str) -> dict[str, str]:
        return read_table(self.file(name), allow_empty_value=(name == "text"))

    def write(self, name: str, table: dict[str, str]) -> Path:
        return write_table(self.file(name), table)

    @property
    def utt2spk(self) -> dict[str, str]:
        return self.read("utt2spk")

    def utt_ids(self) -> list[str]:
        return list(self.utt2spk)

    def speakers(self) -> list[str]:
        return sorted(set(self.utt2spk.values()), key=sort_key)

    def write_utt2spk(self, utt2spk: dict[str, str]) -> None:
        """Writes utt2spk and the spk2utt derived from it, so the two never disagree."""
        self.write("utt2spk", utt2spk)
        self.write("spk2utt", spk2utt_from_utt2spk(utt2spk))

    def segments(self) -> dict[str, Segment] | None:
        if not self.has("segments"):
            return None
        segments = {}
        for utt, value in self.read("segments").items():
            fields = value.split()
            try:
                recording, start, end = fields[0], float(fields[1]), float(fields[2])
            except (IndexError, ValueError):
                raise DataDirError(
                    f"{self.file('segments')}: utterance '{utt}': expected '<utt> <recording> <start> <end>'"
                ) from None
            if end != -1 and end <= start:
                raise DataDirError(f"{self.file('segments')}: utterance '{utt}': end {end} is not after start {start}")
            segments[utt] = Segment(recording, start, end)
        return segments

    def audio_sources(self, scp: str = "wav.scp") -> dict[str, tuple[str, float, float | None]]:
        """utterance id -> (source, start, end) for an audio scp, resolving ``segments`` for wav.scp."""
        table = self.read(scp)
        segments = self.segments() if scp == "wav.scp" else None
        if segments is None:
            return {utt: (source, 0.0, None) for utt, source in table.items()}
        sources = {}
        for utt, seg in segments.items():
            if seg.recording not in table:
                raise DataDirError(
                    f"{self.file('segments')}: utterance '{utt}': recording '{seg.recording}' is not in {scp}"
                )
            sources[utt] = (table[seg.recording], seg.start, None if seg.end == -1 else seg.end)
        return sources

    def load_audio(self, utt: str, sample_rate: int | None = None, scp: str = "wav.scp"):
        """(samples, sample_rate) of one utterance, mono float32; errors name the utterance."""
        from metis_cli.audio import load_audio

        sources = self.audio_sources(scp)
        if utt not in sources:
            raise DataDirError(f"{self.file(scp)}: unknown utterance id '{utt}'")
        source, start, end = sources[utt]
        return load_audio(source, sample_rate, start=start, end=end, utt_id=utt, commands=True)
