"""Per-utterance arrays (SSL features, SSL tokens, codec codes) on disk, sharded and resumable.

A store is a folder of shards. Shard ``<name>`` is ``<name>.bin`` (the arrays' bytes, one after the
other) and ``<name>.idx`` (one line per array: ``utt offset dtype shape``). An index line is written
only after its bytes are flushed, so a killed writer loses at most the array it was writing: on
reopening, the writer cuts ``.bin`` back to the last indexed byte and skips the utterances it has.
Readers memory-map: a lookup by utterance id reads only that array.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metis_cli.data.datadir import check_id, contiguous_parts, id_path
from metis_cli.errors import DataDirError
from metis_cli.files import write_failure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    shard: str
    offset: int
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _read_index(path: Path) -> dict[str, Entry]:
    entries = {}
    if not path.is_file():
        return entries
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        try:
            utt, offset, dtype, shape = (
                fields[0],
                int(fields[1]),
                fields[2],
                tuple(int(s) for s in fields[3].split("x") if s),
            )
        except (IndexError, ValueError):
            raise DataDirError(f"{path}: line {number}: expected '<utt> <offset> <dtype> <shape>'") from None
        check_id(utt, f"{path}: line {number}")
        entries[utt] = Entry(path.stem, offset, dtype, shape)
    return entries


class ArrayWriter:
    """Appends arrays to one shard; reopening an interrupted shard resumes after its last full array."""

    def __init__(self, store_dir, shard: str):
        self.dir = Path(store_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard = shard
        self.bin_path, self.idx_path = id_path(self.dir, shard, ".bin"), id_path(self.dir, shard, ".idx")
        self.entries = _read_index(self.idx_path)
        end = max((e.offset + e.nbytes for e in self.entries.values()), default=0)
        with open(self.bin_path, "ab") as f:
            f.truncate(end)
        self._bin = open(self.bin_path, "ab", buffering=0)  # unbuffered: a failed write leaves nothing in a buffer
        self._idx = open(self.idx_path, "a")

    def __contains__(self, utt: str) -> bool:
        return utt in self.entries

    def write(self, utt: str, array: np.ndarray) -> None:
        check_id(utt, str(self.idx_path))
        array = np.ascontiguousarray(array)
        offset = self._bin.tell()
        shape = "x".join(str(s) for s in array.shape)
        try:
            self._bin.write(array.tobytes())
            self._bin.flush()
            os.fsync(self._bin.fileno())
            self._idx.write(f"{utt} {offset} {array.dtype.str} {shape}\n")
            self._idx.flush()
        except OSError as exc:  # a full disk: cut this array's partial bytes; the arrays before it stay
            os.ftruncate(self._bin.fileno(), offset)
            raise DataDirError(write_failure(self.bin_path, exc) + f" (utterance '{utt}')") from None
        self.entries[utt] = Entry(self.shard, offset, array.dtype.str, array.shape)

    def close(self) -> None:
        self._bin.close()
        self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class ArrayStore:
    """Read access to every shard of a store, by utterance id."""

    def __init__(self, store_dir):
        self.dir = Path(store_dir)
        if not self.dir.is_dir():
            raise DataDirError(f"{self.dir}: array store not found")
        self.entries: dict[str, Entry] = {}
        for idx in sorted(self.dir.glob("*.idx")):
            for utt, entry in _read_index(idx).items():
                if utt in self.entries:
                    raise DataDirError(f"{idx}: utterance '{utt}' is also in shard {self.entries[utt].shard}")
                self.entries[utt] = entry
        self._maps: dict[str, np.memmap] = {}

    @property
    def meta(self) -> dict:
        path = self.dir / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def keys(self) -> list[str]:
        return sorted(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, utt: str) -> bool:
        return utt in self.entries

    def __getitem__(self, utt: str) -> np.ndarray:
        if utt not in self.entries:
            raise DataDirError(f"{self.dir}: no array for utterance '{utt}'")
        entry = self.entries[utt]
        if entry.shard not in self._maps:
            self._maps[entry.shard] = np.memmap(self.dir / f"{entry.shard}.bin", dtype=np.uint8, mode="r")
        raw = self._maps[entry.shard][entry.offset : entry.offset + entry.nbytes]
        return np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape)

    def items(self):
        for utt in self.keys():
            yield utt, self[utt]


class ShardedWriter:
    """One ArrayWriter per job: utterance ids cut into ``num_jobs`` contiguous runs, run j into
    ``part-<j+1>``. ``done`` is what any shard already holds, even if an earlier run used another count."""

    def __init__(self, store_dir, utts, num_jobs: int):
        parts = contiguous_parts(list(utts), max(1, num_jobs))
        self.writers = [ArrayWriter(store_dir, f"part-{j + 1}") for j in range(len(parts))]
        self.shard_of = {utt: j for j, part in enumerate(parts) for utt in part}
        self.done = set(ArrayStore(store_dir).keys())

    def write(self, utt: str, array: np.ndarray) -> None:
        self.writers[self.shard_of[utt]].write(utt, array)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def write_all(self, results, total: int, description: str) -> dict[str, str]:
        """Writes ``(utt, array, error)`` results as they come (an array of None: failed, with its error),
        with a progress bar, and closes the shards. Returns {utterance: error} of the failed ones."""
        from metis_cli.log import progress

        failed = {}
        try:
            with progress() as bar:
                task = bar.add_task(description, total=total)
                for utt, array, error in results:
                    if array is None:
                        failed[utt] = error
                        logger.warning("skipped %s", error)
                    else:
                        self.write(utt, array)
                    bar.advance(task)
        finally:
            self.close()
        return failed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def write_meta(store_dir, **meta) -> None:
    path = Path(store_dir) / "meta.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
