"""Webdataset shards of token data for training at scale (``metis data shard``), read as a stream.

A shard dir holds ``shard-NNNNNN.tar`` files in the webdataset layout (one sample per utterance: its
``<kind>.npy`` arrays, e.g. ``ssl_tokens.npy`` and ``acoustic_codes.npy``, under the key ``<utt>``, so
any webdataset reader can open them), beside each a ``shard-NNNNNN.lengths`` sidecar (``<utt> <frames>``
per line) and one ``shards.json`` (the kinds, each kind's meta.json, the shards with their utterance and
frame counts).

Training streams them (``StreamBatches``): each epoch the shards are shuffled with the seed and dealt
out to the ranks (and, for loaders with workers, to the workers of each rank); a rank reads its shards
in order through a shuffle buffer of ``pool_size`` utterances, sorts each buffer by length and cuts it
into batches of at most ``max_frames`` padded frames. Batches are planned from the sidecars alone, so
the position of batch N is found again without reading any audio data: a resumed run asks for batch N
and gets exactly the batch it would have had. A rank loads the arrays of a shard only when a batch needs
them (a few shards are kept in memory; token shards are small).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from metis_cli.data.datadir import check_id
from metis_cli.errors import DataDirError, MetisError
from metis_cli.files import write_failure

logger = logging.getLogger(__name__)
INDEX = "shards.json"


def is_shard_dir(path) -> bool:
    return (Path(path) / INDEX).is_file()


def write_shards(
    data_dirs, out_dir, kinds=("ssl_tokens",), shard_mb: float = 256.0, shuffle_seed: int | None = 0
) -> dict:
    """Writes the ``kinds`` arrays of every utterance of ``data_dirs`` (that has all of them) into
    shards of about ``shard_mb`` MB; returns the index. Writes to a temporary dir first and renames it,
    so a killed run leaves no half-made shard dir.

    Utterances go into the shards in a seeded random order (``shuffle_seed``; None keeps the sorted
    order): Kaldi dirs are sorted by speaker, so sorted shards would each hold a few speakers, and a
    shuffle buffer smaller than a shard would then fill batches with one speaker's utterances."""
    import shutil

    from metis_cli.data.batching import UtteranceArrays

    out = Path(out_dir)
    if is_shard_dir(out):
        raise MetisError(f"{out}: shards already written; remove it to write them again")
    data = UtteranceArrays(data_dirs, kinds)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards, current, size, lengths = [], None, 0, []

    def close() -> None:
        if current is not None:
            current.close()
            (tmp / f"shard-{len(shards) - 1:06d}.lengths").write_text("".join(f"{u} {n}\n" for u, n in lengths))
            shards[-1].update(utterances=len(lengths), frames=sum(n for _, n in lengths))

    from metis_cli.data.batching import Piece

    order = sorted(data.lengths)
    if shuffle_seed is not None:
        order = [order[i] for i in np.random.default_rng(shuffle_seed).permutation(len(order))]
    try:
        for utt in order:
            if current is None or size >= shard_mb * 2**20:
                close()
                name = f"shard-{len(shards):06d}"
                shards.append({"name": name})
                current, size, lengths = tarfile.open(tmp / f"{name}.tar", "w"), 0, []
            arrays = data.get(Piece(utt, 0, data.lengths[utt]))
            for kind in kinds:
                buffer = io.BytesIO()
                np.save(buffer, arrays[kind].astype(np.int16 if arrays[kind].max() < 2**15 else np.int32))
                info = tarfile.TarInfo(check_id(utt) + f".{kind}.npy")
                info.size = buffer.tell()
                buffer.seek(0)
                current.addfile(info, buffer)
                size += info.size
            lengths.append((utt, data.lengths[utt]))
        close()
    except OSError as exc:  # a full disk: no half-made shard dir is left
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataDirError(write_failure(tmp, exc)) from None
    index = {
        "kinds": list(kinds),
        "meta": {kind: data.meta(kind) for kind in kinds},
        "shards": shards,
        "shuffle_seed": shuffle_seed,
        "utterances": sum(s["utterances"] for s in shards),
        "frames": sum(s["frames"] for s in shards),
    }
    (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    tmp.rename(out)
    logger.info(
        "%s: %d utterances (%.1f h) in %d shards", out, index["utterances"], index["frames"] / 50 / 3600, len(shards)
    )
    return index


def assigned_shards(
    n_shards: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1, worker: int = 0, num_workers: int = 1
) -> list[int]:
    """The shards rank ``rank`` (worker ``worker`` of its loader) reads in ``epoch``: all shards shuffled
    with (seed, epoch), dealt out round-robin to world_size x num_workers readers."""
    readers = world_size * num_workers
    if n_shards < readers:
        raise MetisError(
            f"{n_shards} shard(s) for {world_size} rank(s) x {num_workers} worker(s): every reader needs at least "
            f"one; write smaller shards (metis data shard --shard-mb)"
        )
    order = np.random.default_rng([seed, epoch, 7]).permutation(n_shards)
    return [int(s) for s in order[rank * num_workers + worker :: readers]]


class ShardPiece:
    """One utterance (or a crop of it) of a shard: what a batch is made of."""

    __slots__ = ("shard", "utt", "start", "frames")

    def __init__(self, shard: int, utt: str, start: int, frames: int):
        self.shard, self.utt, self.start, self.frames = shard, utt, start, frames


class ShardData:
    """The shards of a shard dir: their index, and arrays of utterances loaded a shard at a time."""

    def __init__(self, shard_dir, kinds, cache_shards: int = 4):
        self.dir = Path(shard_dir)
        if not is_shard_dir(self.dir):
            raise DataDirError(f"{self.dir}: no {INDEX}; write shards with `metis data shard`")
        try:
            self.index = json.loads((self.dir / INDEX).read_text())
            names = [shard["name"] for shard in self.index["shards"]]
            self.index["kinds"], self.index["meta"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataDirError(
                f"{self.dir / INDEX}: not a shard index ({type(exc).__name__}: {exc}); write it again with `metis "
                "data shard`"
            ) from None
        for name in names:  # shard names become file names: none may lead out of the shard dir
            check_id(str(name), f"{self.dir / INDEX}: shard name")
        missing = [k for k in kinds if k not in self.index["kinds"]]
        if missing:
            raise DataDirError(
                f"{self.dir}: the shards hold {', '.join(self.index['kinds'])}, not {', '.join(missing)}"
            )
        self.kinds = tuple(kinds)
        self.data_dirs = [self.dir]
        self.cache: OrderedDict[int, dict[str, dict[str, np.ndarray]]] = OrderedDict()
        self.cache_shards = cache_shards

    @property
    def shards(self) -> list[dict]:
        return self.index["shards"]

    def meta(self, kind: str) -> dict:
        return self.index["meta"].get(kind, {})

    def lengths(self, shard: int) -> list[tuple[str, int]]:
        path = self.dir / f"{self.shards[shard]['name']}.lengths"
        rows = [line.split() for line in path.read_text().splitlines()]
        return [(utt, int(frames)) for utt, frames in rows]

    def _load(self, shard: int) -> dict[str, dict[str, np.ndarray]]:
        if shard in self.cache:
            self.cache.move_to_end(shard)
            return self.cache[shard]
        path = self.dir / f"{self.shards[shard]['name']}.tar"
        samples: dict[str, dict[str, np.ndarray]] = {}
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    utt, kind, _ = member.name.rsplit(".", 2)
                    if kind in self.kinds:
                        samples.setdefault(utt, {})[kind] = np.load(io.BytesIO(tar.extractfile(member).read()))
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise DataDirError(f"{path}: unreadable shard ({type(exc).__name__}: {exc})") from None
        self.cache[shard] = samples
        while len(self.cache) > self.cache_shards:
            self.cache.popitem(last=False)
        return samples

    def unigram_bits(self, kind: str, vocab_size: int, max_shards: int = 4) -> float:
        """Entropy (bits) of the token distribution over the first ``max_shards`` shards (a sample)."""
        from metis_cli.data.batching import entropy_bits

        counts = np.zeros(vocab_size, dtype=np.int64)
        for shard in range(min(max_shards, len(self.shards))):
            for sample in self._load(shard).values():
                counts += np.bincount(sample[kind].reshape(-1).astype(np.int64), minlength=vocab_size)[:vocab_size]
        return entropy_bits(counts)

    def collate(self, pieces: list[ShardPiece]) -> dict[str, torch.Tensor]:
        """Right-padded batch as UtteranceArrays.collate makes it: each kind [B, T_max, ...], ``valid``, ``lengths``."""
        from metis_cli.data.batching import padded_batch

        arrays = []
        for p in pieces:
            sample = self._load(p.shard).get(p.utt)
            if sample is None or any(k not in sample for k in self.kinds):
                raise DataDirError(
                    f"{self.dir}: shard {self.shards[p.shard]['name']} has no {', '.join(self.kinds)} for '{p.utt}'"
                )
            arrays.append({k: np.asarray(sample[k][p.start : p.start + p.frames], dtype=np.int64) for k in self.kinds})
        return padded_batch(arrays, self.kinds)


class StreamBatches:
    """Batches of rank ``rank`` read from the shards as a stream (see the module doc); called like
    DynamicBatches: ``batches(step, micro, accum)`` gives the pieces of that micro-batch."""

    def __init__(
        self,
        data: ShardData,
        max_frames: int,
        max_utterance_frames: int,
        seed: int = 0,
        pool_size: int = 2000,
        world_size: int = 1,
        rank: int = 0,
        min_frames: int = 4,
    ):
        if max_frames < max_utterance_frames:
            raise MetisError(
                f"data.max_frames ({max_frames}) must be at least data.max_utterance_frames ({max_utterance_frames})"
            )
        self.data, self.max_frames, self.max_utt = data, max_frames, max_utterance_frames
        self.seed, self.pool_size, self.world_size, self.rank, self.min_frames = (
            seed,
            pool_size,
            world_size,
            rank,
            min_frames,
        )
        assigned_shards(len(data.shards), 0, seed, rank, world_size)  # enough shards for every rank
        self._stream, self.position, self._last = None, 0, (-1, [])

    def _batches(self):
        epoch = 0
        while True:
            rng = np.random.default_rng([self.seed, epoch, self.rank, 11])
            buffer: list[ShardPiece] = []
            for shard in assigned_shards(len(self.data.shards), epoch, self.seed, self.rank, self.world_size):
                for utt, frames in self.data.lengths(shard):
                    if frames < self.min_frames:
                        continue
                    start = int(rng.integers(0, frames - self.max_utt + 1)) if frames > self.max_utt else 0
                    buffer.append(ShardPiece(shard, utt, start, min(frames, self.max_utt)))
                    if len(buffer) == self.pool_size:
                        yield from self._cut(buffer, rng)
                        buffer = []
            if buffer:
                yield from self._cut(buffer, rng)
            epoch += 1

    def _cut(self, pool: list[ShardPiece], rng: np.random.Generator):
        from metis_cli.data.batching import cut_batches

        batches = cut_batches([pool[i] for i in rng.permutation(len(pool))], self.max_frames)
        for i in rng.permutation(len(batches)):
            yield batches[i]

    @property
    def batches_per_epoch(self) -> int:
        """An estimate from the index (the stream itself has no end)."""
        frames = sum(s["frames"] for s in self.data.shards) / self.world_size
        return max(1, int(frames // self.max_frames))

    def __call__(self, step: int, micro: int = 0, accum: int = 1) -> list[ShardPiece]:
        index = step * accum + micro
        if index == self._last[0]:
            return self._last[1]
        if self._stream is None or index < self.position:  # (re)start: replay the plan up to ``index``
            self._stream, self.position = self._batches(), 0
        while self.position < index:
            next(self._stream)
            self.position += 1
        self.position += 1
        self._last = (index, next(self._stream))
        return self._last[1]
