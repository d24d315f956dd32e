"""Phones placed on the SSL token frames, for TTS's ``text.frame_phones`` option (not in the published model).

The published TTS model reads its phones as a prefix and learns where each one goes from thousands of hours.
At mini scale (45 minutes) it never does (docs/tts_text_mini.md). With ``text.frame_phones`` the phones also
reach the model frame by frame, through the frame adapter, as VC's source features do, so that no alignment
has to be learned:

- each word is phonemised on its own (espeak joins short words to their neighbours when it reads a whole
  sentence, so the words would not match the timings);
- by the corpus's word timings (``words.ctm``; training with ``frame_phones: words``): each word's phones share
  its span evenly, the frames between words are silence;
- by each phone's mean duration in those timings (``PhoneDurations``, saved as ``phone_durations.json`` in the
  experiment dir), with the mean lead-in, pause and tail silences, all scaled to the number of frames: at
  decoding, and in training with ``frame_phones: durations``, so that training sees what decoding will.

Frame ids are phone vocabulary ids; 0 (the vocabulary's padding id) marks silence. Word boundaries,
punctuation and stress marks take no frames of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metis_cli.errors import MetisError
from metis_cli.text.normalize import normalize_text
from metis_cli.text.phonemize import STRESS, WORD

SILENCE = 0
NONE = -1  # a frame without a phone condition (the prompt, padding): a zero vector
DURATIONS_FILE = "phone_durations.json"
_UNTIMED = set(STRESS) | set(",.!?;:") | {WORD}


def words_of(text: str) -> list[str]:
    """The words of a transcript, as the corpus's word timings count them: normalised (numbers spelled out), lower
    case, split at anything but letters and apostrophes."""
    cleaned = "".join(c if c.isalpha() or c == "'" else " " for c in normalize_text(text).lower())
    return cleaned.split()


def phones_by_word(text: str, phonemizer, cache: dict | None = None) -> list[list[str]]:
    """Each word's timed phones (stress marks, punctuation and word boundaries left out), each word phonemised
    on its own: phonemised whole, espeak joins short words to their neighbours ("of the")."""
    cache = {} if cache is None else cache
    out = []
    for word in words_of(text):
        if word not in cache:
            cache[word] = [p for p in phonemizer(word) if p not in _UNTIMED]
        if cache[word]:
            out.append(cache[word])
    return out


def one_hot_condition(ids, n_phones: int):
    """Frame ids (torch, any shape; ``NONE`` for no condition) -> the frame adapter's input [..., n_phones]: one-hot
    vectors, zero where ``NONE``. Training and decoding both build the condition here."""
    import torch

    one_hot = torch.nn.functional.one_hot(ids.clamp(min=0), n_phones).float()
    return one_hot * (ids != NONE)[..., None]


def _spread(out: np.ndarray, group: list[int], start: int, end: int) -> None:
    """Writes ``group``'s phones over frames [start, end), sharing them evenly."""
    end = max(end, start + 1)
    edges = start + np.round(np.arange(len(group) + 1) * (end - start) / len(group)).astype(int)
    for phone, a, b in zip(group, edges[:-1], edges[1:], strict=True):
        out[a : max(b, a + 1)] = phone


def place_by_words(groups: list[list[int]], word_spans: list[tuple[float, float]], n_frames: int, frame_rate: float):
    """Frame ids [n_frames] with each word's phones over its span (seconds). The words must be the groups'
    words; where their counts differ (a number spelled out, say), every phone shares the speech span evenly."""
    out = np.full(n_frames, SILENCE, dtype=np.int64)
    if not groups or not word_spans:
        return out
    if len(groups) != len(word_spans):
        groups = [[p for g in groups for p in g]]
        word_spans = [(word_spans[0][0], word_spans[-1][1])]
    for group, (start, end) in zip(groups, word_spans, strict=True):
        a = min(int(round(start * frame_rate)), n_frames - 1)
        _spread(out, group, a, min(int(round(end * frame_rate)), n_frames))
    return out


@dataclass
class PhoneDurations:
    """Mean frames per phone id and of the silences (lead-in, between words, tail), from placed training
    utterances; ``place`` lays out new text with them."""

    phone_frames: dict[int, float] = field(default_factory=dict)
    default_frames: float = 4.0
    lead_frames: float = 0.0
    pause_frames: float = 0.0
    tail_frames: float = 0.0

    @classmethod
    def fit(cls, placed: list[tuple[np.ndarray, int]]) -> "PhoneDurations":
        """From (frame ids, number of words) of each placed training utterance."""
        runs: dict[int, list[int]] = {}
        leads, tails, pause_total, boundaries = [], [], 0, 0
        for ids, n_words in placed:
            starts = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1])
            lengths = np.diff(np.concatenate([starts, [len(ids)]]))
            values = ids[starts]
            for k, (value, length) in enumerate(zip(values, lengths, strict=True)):
                if value != SILENCE:
                    runs.setdefault(int(value), []).append(int(length))
                elif k == 0:
                    leads.append(int(length))
                elif k == len(values) - 1:
                    tails.append(int(length))
                else:
                    pause_total += int(length)
            boundaries += max(0, n_words - 1)
        if not runs:
            raise MetisError("no phones were placed on any training utterance: are words.ctm and text consistent?")
        every = [n for lengths in runs.values() for n in lengths]
        return cls(
            phone_frames={p: float(np.mean(n)) for p, n in sorted(runs.items())},
            default_frames=float(np.mean(every)),
            lead_frames=float(np.mean(leads)) if leads else 0.0,
            pause_frames=pause_total / boundaries if boundaries else 0.0,
            tail_frames=float(np.mean(tails)) if tails else 0.0,
        )

    def place(self, groups: list[list[int]], n_frames: int) -> np.ndarray:
        """Frame ids [n_frames] for words ``groups``, each phone its mean duration, scaled to ``n_frames``."""
        segments: list[tuple[int, float]] = [(SILENCE, self.lead_frames)]
        for k, group in enumerate(groups):
            if k:
                segments.append((SILENCE, self.pause_frames))
            segments.extend((p, self.phone_frames.get(p, self.default_frames)) for p in group)
        segments.append((SILENCE, self.tail_frames))
        lengths = np.array([n for _, n in segments])
        edges = np.round(np.concatenate([[0], np.cumsum(lengths)]) * n_frames / max(lengths.sum(), 1e-9)).astype(int)
        out = np.full(n_frames, SILENCE, dtype=np.int64)
        for (phone, _), a, b in zip(segments, edges[:-1], edges[1:], strict=True):
            out[a:b] = phone
        return out

    def save(self, path) -> None:
        data = {
            "phone_frames": {str(k): round(v, 4) for k, v in self.phone_frames.items()},
            **{k: round(getattr(self, k), 4) for k in ("default_frames", "lead_frames", "pause_frames", "tail_frames")},
        }
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "PhoneDurations":
        path = Path(path)
        if not path.is_file():
            raise MetisError(f"{path}: not found; the model was trained with text.frame_phones and needs its durations")
        data = json.loads(path.read_text())
        data["phone_frames"] = {int(k): float(v) for k, v in data["phone_frames"].items()}
        return cls(**data)
