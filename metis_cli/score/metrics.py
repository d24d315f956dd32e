"""Metrics that need no model: text normalisation and edit distances, SI-SDR, PESQ, STOI/ESTOI, MCD.

All signal metrics take 16 kHz mono float arrays; for SI-SDR, PESQ and STOI a reference and an estimate of
different lengths are cut to the shorter one (generated speech is rarely sample-aligned; say so when reading
PESQ); MCD aligns them in time itself.
"""

from __future__ import annotations

import math
import re
import unicodedata

import numpy as np

SAMPLE_RATE = 16000


def normalize_text(text: str) -> str:
    """Lower case, punctuation removed (apostrophes inside words kept), hyphens split, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def edit_distance(reference: list, hypothesis: list) -> int:
    """Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def align(reference: list, hypothesis: list) -> list[tuple[str, str | None, str | None]]:
    """A minimum-edit alignment: (op, reference item, hypothesis item) with op one of '=' (correct), 'S'
    (substitution), 'D' (deletion: a reference item the hypothesis lacks), 'I' (insertion). Among alignments of
    the minimum cost, matches are kept where they can be (``a [-b] c`` rather than ``[a->c]...``)."""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1
            )
    ops = []
    i, j = n, m
    while i or j:
        same = bool(i and j) and reference[i - 1] == hypothesis[j - 1]
        if same and cost[i, j] == cost[i - 1, j - 1]:
            ops.append(("=", reference[i - 1], hypothesis[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            ops.append(("D", reference[i - 1], None))
            i -= 1
        elif j and cost[i, j] == cost[i, j - 1] + 1:
            ops.append(("I", None, hypothesis[j - 1]))
            j -= 1
        else:
            ops.append(("S", reference[i - 1], hypothesis[j - 1]))
            i, j = i - 1, j - 1
    return ops[::-1]


def word_and_char_errors(reference: str, hypothesis: str) -> dict[str, int]:
    """Errors and reference lengths after normalisation; corpus WER = sum(word_errors) / sum(ref_words), with
    the word errors split into substitutions, deletions and insertions."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    ops = [op for op, _, _ in align(ref.split(), hyp.split())]
    return {
        "word_errors": len(ops) - ops.count("="),
        "ref_words": len(ref.split()),
        "word_subs": ops.count("S"),
        "word_dels": ops.count("D"),
        "word_ins": ops.count("I"),
        "char_errors": edit_distance(list(ref.replace(" ", "")), list(hyp.replace(" ", ""))),
        "ref_chars": len(ref.replace(" ", "")),
    }


TEXT_MARKS = {"=": "{r}", "S": "[{r}->{h}]", "D": "[-{r}]", "I": "[+{h}]"}


def aligned_text(reference: str, hypothesis: str, marks: dict | None = None, escape=str) -> str:
    """One line showing the ASR hypothesis against the reference (after normalisation), each aligned pair written
    by ``marks[op]`` with ``{r}`` and ``{h}`` the reference and hypothesis words passed through ``escape``.
    The default: correct words as they are, ``[ref->hyp]`` substitutions, ``[-ref]`` deletions, ``[+hyp]``
    insertions."""
    marks = marks or TEXT_MARKS
    ops = align(normalize_text(reference).split(), normalize_text(hypothesis).split())
    return " ".join(marks[op].format(r=escape(r or ""), h=escape(h or "")) for op, r, h in ops)


def _aligned(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(reference), len(estimate))
    return np.asarray(reference[:n], dtype=np.float64), np.asarray(estimate[:n], dtype=np.float64)


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), zero-mean signals."""
    ref, est = _aligned(reference, estimate)
    ref, est = ref - ref.mean(), est - est.mean()
    target = (np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)) * ref
    distortion = est - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(distortion, distortion) + 1e-12)))


def pesq_scores(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """PESQ wide band (P.862.2) and narrow band (P.862, on 8 kHz copies)."""
    from pesq import pesq

    from metis_cli.audio import resample

    ref, est = _aligned(reference, estimate)
    ref8, est8 = (
        resample(ref.astype(np.float32), SAMPLE_RATE, 8000),
        resample(est.astype(np.float32), SAMPLE_RATE, 8000),
    )
    return {"pesq_wb": float(pesq(SAMPLE_RATE, ref, est, "wb")), "pesq_nb": float(pesq(8000, ref8, est8, "nb"))}


def stoi_scores(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    from pystoi import stoi

    ref, est = _aligned(reference, estimate)
    return {"stoi": float(stoi(ref, est, SAMPLE_RATE)), "estoi": float(stoi(ref, est, SAMPLE_RATE, extended=True))}


def mel_cepstrum(wav: np.ndarray, order: int = 24, alpha: float = 0.42, frame_period_ms: float = 5.0) -> np.ndarray:
    """[frames, order + 1] mel-cepstrum of 16 kHz audio as MCD is usually computed in TTS papers: WORLD's
    CheapTrick envelope (F0 by DIO + StoneMask) every 5 ms, converted by SPTK's sp2mc (all-pass constant
    0.42, the usual one at 16 kHz)."""
    from metis_cli.codec.world import import_world

    pyworld, pysptk = import_world()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, times = pyworld.dio(x, SAMPLE_RATE, frame_period=frame_period_ms)
    f0 = pyworld.stonemask(x, f0, times, SAMPLE_RATE)
    envelope = pyworld.cheaptrick(x, f0, times, SAMPLE_RATE)
    return pysptk.sp2mc(np.maximum(envelope, 1e-16), order, alpha)


def mcd(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mel-cepstral distortion in dB as TTS papers report it: coefficients 1..24 (energy left out) of the two
    signals' mel-cepstra (``mel_cepstrum``), time-aligned by dynamic time warping on those coefficients, then
    10 / ln 10 * sqrt(2 * sum of squared differences) averaged over the aligned frame pairs. Generated speech
    of another length or timing is compared with the reference's frames it matches, not frame by frame."""
    from librosa.sequence import dtw

    ref, est = mel_cepstrum(reference)[:, 1:], mel_cepstrum(estimate)[:, 1:]
    _, path = dtw(ref.T, est.T, metric="euclidean")
    diff = ref[path[:, 0]] - est[path[:, 1]]
    return float(np.mean(10 / math.log(10) * np.sqrt(2 * np.sum(diff**2, axis=1))))
