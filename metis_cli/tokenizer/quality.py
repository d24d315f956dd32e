"""How good are the tokens: cluster usage, perplexity, and, where phone timings exist, phone purity,
cluster purity and PNMI (phone-normalised mutual information: the share of the phone label's entropy
that the token explains), computed over 50 Hz frames as ESPnet's k-means label check does."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from metis_cli.data.arrays import ArrayStore
from metis_cli.data.batching import entropy_bits
from metis_cli.data.datadir import read_ctm

FRAME = 0.02


def frame_phones(timings, n_frames: int) -> list[str | None]:
    """The phone at the centre of each 20 ms frame (None past the last timing)."""
    labels: list[str | None] = [None] * n_frames
    for item in timings:
        first = max(0, math.ceil(item.start / FRAME - 0.5))
        last = min(n_frames, math.ceil(item.end / FRAME - 0.5))
        for i in range(first, last):
            labels[i] = item.token
    return labels


def token_quality(tokens_dir, n_clusters: int | None = None, phones_ctm: Path | None = None) -> dict:
    store = ArrayStore(tokens_dir)
    k = n_clusters or int(store.meta.get("n_clusters", 0)) or None
    all_tokens = np.concatenate([store[u].astype(np.int64) for u in store.keys()])
    k = k or int(all_tokens.max()) + 1
    usage = np.bincount(all_tokens, minlength=k)
    entropy = entropy_bits(usage)
    report = {
        "utterances": len(store),
        "frames": int(len(all_tokens)),
        "n_clusters": k,
        "clusters_used": int((usage > 0).sum()),
        "usage": float((usage > 0).mean()),
        "entropy_bits": entropy,
        "perplexity": float(2**entropy),
    }
    if phones_ctm is None or not Path(phones_ctm).is_file():
        return report
    timings = read_ctm(phones_ctm)
    pairs = []
    for utt in store.keys():
        if utt not in timings:
            continue
        tokens = store[utt]
        for token, phone in zip(tokens.tolist(), frame_phones(timings[utt], len(tokens)), strict=True):
            if phone is not None:
                pairs.append((phone, token))
    if not pairs:
        return report
    phones = sorted({p for p, _ in pairs})
    index = {p: i for i, p in enumerate(phones)}
    joint = np.zeros((len(phones), k), dtype=np.float64)
    for phone, token in pairs:
        joint[index[phone], token] += 1
    n = joint.sum()
    h_phone = entropy_bits(joint.sum(1))
    p_joint = joint / n
    p_phone, p_token = p_joint.sum(1, keepdims=True), p_joint.sum(0, keepdims=True)
    nz = p_joint > 0
    mutual = float((p_joint[nz] * np.log2(p_joint[nz] / (p_phone @ p_token)[nz])).sum())
    report.update(
        {
            "phones": len(phones),
            "labelled_frames": int(n),
            "phone_purity": float(joint.max(0).sum() / n),
            "cluster_purity": float(joint.max(1).sum() / n),
            "pnmi": mutual / h_phone if h_phone > 0 else 0.0,
        }
    )
    return report
