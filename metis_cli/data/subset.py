"""Subsets of a data dir (by utterance or speaker) and Kaldi-style splits into N parts for parallel jobs."""

from __future__ import annotations

import random
from pathlib import Path

from metis_cli.data.datadir import (
    RECORDING_KEYED,
    SPEAKER_KEYED,
    DataDir,
    atomic_write_text,
    contiguous_parts,
    format_ctm,
    format_ids,
    read_ctm,
    sort_key,
)
from metis_cli.errors import DataDirError


def subset_datadir(src, dst, utt_ids, overwrite: bool = False) -> DataDir:
    """Copies every table of ``src`` restricted to ``utt_ids`` (and their speakers/recordings) to ``dst``.

    Unknown ids raise, naming them. ``dst`` must not already hold a data dir unless ``overwrite``.
    Returns the new data dir.
    """
    src_dd, dst_dd = DataDir(src), DataDir(dst)
    utt2spk = src_dd.utt2spk
    wanted = set(utt_ids)
    unknown = wanted - set(utt2spk)
    if unknown:
        raise DataDirError(f"{src_dd.file('utt2spk')}: {len(unknown)} unknown utterance id(s): {format_ids(unknown)}")
    if not wanted:
        raise DataDirError(f"{src}: the subset is empty")
    if dst_dd.has("utt2spk") and not overwrite:
        raise DataDirError(f"{dst}: already holds a data dir; pass --overwrite to replace it")
    if dst_dd.path.resolve() == src_dd.path.resolve():
        raise DataDirError(f"{dst}: the subset cannot be written over its source")

    speakers = {utt2spk[u] for u in wanted}
    segments = src_dd.read("segments") if src_dd.has("segments") else None
    recordings = {segments[u].split()[0] for u in wanted} if segments else set()
    for name in src_dd.table_names():
        if name == "spk2utt":
            continue
        table = src_dd.read(name)
        if name in SPEAKER_KEYED:
            keep = speakers
        elif name in RECORDING_KEYED or (name == "wav.scp" and segments is not None):
            keep = recordings
        else:
            keep = wanted
        dst_dd.write(name, {k: v for k, v in table.items() if k in keep})
    dst_dd.write_utt2spk({u: s for u, s in utt2spk.items() if u in wanted})
    for name in src_dd.ctm_names():
        timings = read_ctm(src_dd.file(name))
        atomic_write_text(dst_dd.file(name), format_ctm({u: t for u, t in timings.items() if u in wanted}))
    return dst_dd


def select_utts(
    dd: DataDir,
    first: int | None = None,
    last: int | None = None,
    random_n: int | None = None,
    seed: int = 0,
    utt_list: Path | None = None,
    spk_list: Path | None = None,
) -> list[str]:
    """Utterance ids chosen by exactly one rule: first/last/random N, or ids/speakers listed in a file."""
    rules = [x for x in (first, last, random_n, utt_list, spk_list) if x is not None]
    if len(rules) != 1:
        raise DataDirError("choose exactly one of --first, --last, --random, --utt-list, --spk-list")
    utt2spk = dd.utt2spk
    utts = list(utt2spk)
    for n in (first, last, random_n):
        if n is not None and not 0 < n <= len(utts):
            raise DataDirError(f"{dd.path}: asked for {n} utterances, the data dir has {len(utts)}")
    if first is not None:
        return utts[:first]
    if last is not None:
        return utts[-last:]
    if random_n is not None:
        return sorted(random.Random(seed).sample(utts, random_n), key=sort_key)
    if utt_list is not None:
        return _read_id_list(utt_list)
    speakers = set(_read_id_list(spk_list))
    unknown = speakers - set(utt2spk.values())
    if unknown:
        raise DataDirError(f"{spk_list}: unknown speaker id(s): {', '.join(sorted(unknown))}")
    return [u for u in utts if utt2spk[u] in speakers]


def _read_id_list(path: Path) -> list[str]:
    if not Path(path).is_file():
        raise DataDirError(f"{path}: id list not found")
    return [line.split()[0] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def split_datadir(src, num_jobs: int, by: str = "utt") -> list[DataDir]:
    """Splits ``src`` into ``num_jobs`` parts under ``src/split<N><by>/<1..N>`` (Kaldi's layout).

    ``by="utt"``: contiguous runs of utterances of equal count (jobs see speakers cut across parts).
    ``by="spk"``: whole speakers per part, balanced by utterance count (for per-speaker statistics).
    An up-to-date split is reused.
    """
    if by not in ("utt", "spk"):
        raise DataDirError(f"split by must be 'utt' or 'spk', not '{by}'")
    dd = DataDir(src)
    utt2spk = dd.utt2spk
    utts = list(utt2spk)
    units = utts if by == "utt" else sorted(set(utt2spk.values()), key=sort_key)
    if not 0 < num_jobs <= len(units):
        kind = "utterances" if by == "utt" else "speakers"
        raise DataDirError(f"{src}: cannot split {len(units)} {kind} into {num_jobs} parts")

    if by == "utt":
        parts = contiguous_parts(utts, num_jobs)
    else:
        counts: dict[str, int] = {}
        for spk in utt2spk.values():
            counts[spk] = counts.get(spk, 0) + 1
        loads = [0] * num_jobs
        members: list[set[str]] = [set() for _ in range(num_jobs)]
        # Largest speakers first onto the lightest part: a simple, good balance.
        for spk in sorted(units, key=lambda s: (-counts[s], sort_key(s))):
            j = loads.index(min(loads))
            loads[j] += counts[spk]
            members[j].add(spk)
        parts = [[u for u in utts if utt2spk[u] in members[j]] for j in range(num_jobs)]

    root = dd.path / f"split{num_jobs}{by}"
    source_mtime = max(dd.file(name).stat().st_mtime for name in dd.table_names())
    split_dirs = []
    for j, part in enumerate(parts, start=1):
        part_dir = root / str(j)
        marker = part_dir / ".complete"
        if not (marker.is_file() and marker.stat().st_mtime >= source_mtime):
            subset_datadir(dd.path, part_dir, part, overwrite=True)
            marker.touch()
        split_dirs.append(DataDir(part_dir))
    return split_dirs
