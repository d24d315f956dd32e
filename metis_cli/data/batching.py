"""Token data for the masked generative models: per-utterance arrays from data dirs, and dynamic
batches by frame count; the entropy of a token or code histogram.

A batch holds as many utterances as fit ``max_frames`` padded frames (its size times its longest
utterance). Utterances longer than ``max_utterance_frames`` are cropped at a random place. Each epoch
shuffles the utterances, sorts them by length within pools of ``pool_size`` (so batches waste little
padding), cuts batches and shuffles their order: all from (seed, epoch), so batch N is always the same
batch, whatever was run before (exact resume). With several ranks, rank r of W takes global batches
N * W + r, so W ranks see the same data as one rank over W consecutive batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metis_cli.data.arrays import ArrayStore
from metis_cli.errors import DataDirError, MetisError

logger = logging.getLogger(__name__)

# SSL tokens and codec codes of one utterance come from different front ends, whose framing may
# disagree by a frame or two at the end; more than this is a real mismatch.
MAX_FRAME_MISMATCH = 2
WRITTEN_BY = {
    "ssl_tokens": "`metis tokenize` (recipe stage 2)",
    "acoustic_codes": "`metis codec encode` (recipe stage 3)",
}


@dataclass(frozen=True)
class Piece:
    utt: str
    start: int
    frames: int


class UtteranceArrays:
    """The arrays named ``kinds`` (e.g. ``ssl_tokens``, ``acoustic_codes``) of every utterance of some data
    dirs, trimmed to a common length. Utterances missing one kind are left out (and counted in the log)."""

    def __init__(self, data_dirs, kinds=("ssl_tokens",), min_frames: int = 4):
        self.kinds = tuple(kinds)
        self.data_dirs = [Path(d) for d in data_dirs]
        self.stores: dict[str, list[ArrayStore]] = {kind: [] for kind in self.kinds}
        self.where: dict[str, int] = {}
        self.lengths: dict[str, int] = {}
        for index, data_dir in enumerate(data_dirs):
            stores = {}
            for kind in self.kinds:
                path = Path(data_dir) / kind
                if not (path / "meta.json").is_file():
                    raise DataDirError(
                        f"{path}: not found; write it with {WRITTEN_BY.get(kind, 'the stage that makes it')} first"
                    )
                stores[kind] = ArrayStore(path)
                self.stores[kind].append(stores[kind])
            first = stores[self.kinds[0]]
            missing, short = 0, 0
            for utt in first.keys():
                if not all(utt in s for s in stores.values()):
                    missing += 1
                    continue
                frames = [stores[kind].entries[utt].shape[0] for kind in self.kinds]
                if max(frames) - min(frames) > MAX_FRAME_MISMATCH:
                    raise DataDirError(
                        f"{data_dir}: utterance '{utt}': "
                        f"{', '.join(f'{k} {n} frames' for k, n in zip(self.kinds, frames, strict=True))}; "
                        f"they must describe the same audio at the same frame rate"
                    )
                if min(frames) < min_frames:
                    short += 1
                    continue
                if utt in self.where:
                    raise DataDirError(f"utterance '{utt}' is in both {data_dirs[self.where[utt]]} and {data_dir}")
                self.where[utt] = index
                self.lengths[utt] = min(frames)
            if missing or short:
                logger.warning(
                    "%s: %d utterance(s) without every one of %s, %d shorter than %d frames: left out",
                    data_dir,
                    missing,
                    ", ".join(self.kinds),
                    short,
                    min_frames,
                )
        if not self.lengths:
            raise DataDirError(f"no utterances with {', '.join(self.kinds)} in {', '.join(map(str, data_dirs))}")

    def meta(self, kind: str) -> dict:
        return self.stores[kind][0].meta

    def get(self, piece: Piece) -> dict[str, np.ndarray]:
        index = self.where[piece.utt]
        return {
            kind: np.asarray(
                self.stores[kind][index][piece.utt][piece.start : piece.start + piece.frames], dtype=np.int64
            )
            for kind in self.kinds
        }

    def unigram_bits(self, kind: str, vocab_size: int | None = None) -> float:
        """Entropy (bits) of the ``kind`` token distribution over every utterance (ShardData.unigram_bits
        samples a stream's shards)."""
        return unigram_entropy_bits(self, kind, vocab_size)

    def collate(self, pieces: list[Piece]) -> dict[str, torch.Tensor]:
        return padded_batch([self.get(p) for p in pieces], self.kinds)


def padded_batch(arrays: list[dict[str, np.ndarray]], kinds) -> dict[str, torch.Tensor]:
    """Right-padded batch of per-utterance arrays: each kind [B, T_max, ...] (pad value 0), ``valid``
    [B, T_max], ``lengths`` [B] (the first kind's lengths)."""
    lengths = torch.tensor([len(a[kinds[0]]) for a in arrays])
    t_max = int(lengths.max())
    batch = {"lengths": lengths, "valid": torch.arange(t_max)[None] < lengths[:, None]}
    for kind in kinds:
        out = np.zeros((len(arrays), t_max, *arrays[0][kind].shape[1:]), dtype=np.int64)
        for i, a in enumerate(arrays):
            out[i, : len(a[kind])] = a[kind]
        batch[kind] = torch.from_numpy(out)
    return batch


def cut_batches(pool: list, max_frames: int) -> list[list]:
    """Pieces (with ``frames``) sorted by length, cut into batches of at most ``max_frames`` padded frames."""
    batches, current = [], []
    for piece in sorted(pool, key=lambda x: x.frames):
        if current and (len(current) + 1) * piece.frames > max_frames:
            batches.append(current)
            current = []
        current.append(piece)
    if current:
        batches.append(current)
    return batches


class DynamicBatches:
    def __init__(
        self,
        lengths: dict[str, int],
        max_frames: int,
        max_utterance_frames: int,
        seed: int = 0,
        pool_size: int = 2000,
        world_size: int = 1,
        rank: int = 0,
    ):
        if max_frames < max_utterance_frames:
            raise MetisError(
                f"data.max_frames ({max_frames}) must be at least data.max_utterance_frames ({max_utterance_frames})"
            )
        if not lengths:
            raise MetisError("no utterances to make batches of")
        self.utts = sorted(lengths)
        self.lengths = lengths
        self.max_frames, self.max_utt = max_frames, max_utterance_frames
        self.seed, self.pool_size = seed, pool_size
        self.world_size, self.rank = world_size, rank
        self.epochs: list[list[list[Piece]]] = []
        self.starts: list[int] = []

    def _epoch(self, epoch: int) -> list[list[Piece]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = [self.utts[i] for i in rng.permutation(len(self.utts))]
        pieces = []
        for utt in order:
            frames = self.lengths[utt]
            start = int(rng.integers(0, frames - self.max_utt + 1)) if frames > self.max_utt else 0
            pieces.append(Piece(utt, start, min(frames, self.max_utt)))
        batches = []
        for p in range(0, len(pieces), self.pool_size):
            batches += cut_batches(pieces[p : p + self.pool_size], self.max_frames)
        return [batches[i] for i in rng.permutation(len(batches))]

    @property
    def batches_per_epoch(self) -> int:
        self._extend(0)
        return len(self.epochs[0])

    def _extend(self, global_index: int) -> None:
        while not self.epochs or global_index >= self.starts[-1] + len(self.epochs[-1]):
            self.starts.append(self.starts[-1] + len(self.epochs[-1]) if self.epochs else 0)
            self.epochs.append(self._epoch(len(self.epochs)))
            if len(self.epochs) > 2:  # only the current and previous epoch are ever needed again
                self.epochs[-3] = []

    def __call__(self, step: int, micro: int = 0, accum: int = 1) -> list[Piece]:
        """The pieces of rank ``rank``'s micro-batch ``micro`` of optimizer step ``step``."""
        index = (step * accum + micro) * self.world_size + self.rank
        self._extend(index)
        epoch = max(e for e, s in enumerate(self.starts) if s <= index)
        return self.epochs[epoch][index - self.starts[epoch]]


def entropy_bits(counts) -> float:
    """Entropy (bits) of a histogram of token or code counts; 2 ** it is the perplexity (how many
    values are in effective use)."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def unigram_entropy_bits(data: UtteranceArrays, kind: str = "ssl_tokens", vocab_size: int | None = None) -> float:
    """Entropy (bits) of the token distribution: what a model that ignores context would score."""
    counts = np.zeros(vocab_size or 1, dtype=np.int64)
    for utt in data.lengths:
        tokens = data.get(Piece(utt, 0, data.lengths[utt]))[kind].reshape(-1)
        if tokens.max() >= len(counts):
            counts = np.pad(counts, (0, int(tokens.max()) + 1 - len(counts)))
        counts += np.bincount(tokens, minlength=len(counts))
    return entropy_bits(counts)
