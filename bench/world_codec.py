"""The parametric (WORLD) codec's quantiser layouts, compared on the embedded corpus.

    python3 bench/world_codec.py --data data/mini --utts 20            # after stage 0 of any recipe
    python3 bench/world_codec.py --utts 0 --counts 8 --train-data data/mini_large/mini_train \
        --layouts default,8x1024 --per-speaker                           # all of mini_test, per speaker

Learns each layout's codebooks on a seeded pick of ``--train-data`` utterances (default ``<data>/mini_train``;
``--train-utts``, as the recipe's ``data.max_utterances``) and encodes/decodes the first ``--utts`` utterances
(0: all) of ``mini_test``, printing STOI and PESQ-WB after the first 1, 2, 4 and all codebooks (``--counts``),
and the log-F0 error on frames voiced in both; ``--per-speaker`` adds STOI and PESQ-WB per test speaker.
WORLD analysis/synthesis without quantisation is the ceiling row. Features are cached in ``--cache``
(default /tmp/metis_world_bench, one store per train set), so a second run only fits and decodes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LAYOUTS = {  # name: overrides of conf/mini/codec.yaml's model section
    "joint 8x256, per-dim z-score": {"quantizer": {"pitch_codebook": None}, "_zscore": True},
    "joint 8x1024, per-dim z-score": {"quantizer": {"pitch_codebook": None, "codebook_size": 1024}, "_zscore": True},
    "joint 8x256": {"quantizer": {"pitch_codebook": None}},
    "pitch codebook 0, 8x256": {"quantizer": {"pitch_codebook": 0}},
    "pitch codebook 1, 8x256 (default)": {},
}
SHORT = {"default": "pitch codebook 1, 8x256 (default)"}  # --layouts: a name, default, or NxK (pitch codebook 1)


def layout(name: str) -> tuple[str, dict]:
    """A --layouts entry: one of LAYOUTS, ``default``, or ``NxK`` (N codebooks of K codes, pitch codebook 1)."""
    name = SHORT.get(name, name)
    if name in LAYOUTS:
        return name, LAYOUTS[name]
    n, _, k = name.partition("x")
    if not (n.isdigit() and k.isdigit()):
        raise SystemExit(f"--layouts: unknown layout {name!r}; give one of {sorted(LAYOUTS)}, default or NxK")
    return f"pitch codebook 1, {n}x{k}", {"quantizer": {"n_codebooks": int(n), "codebook_size": int(k)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "mini")
    parser.add_argument("--utts", type=int, default=20)
    parser.add_argument("--train-data", type=Path, default=None, help="default: <data>/mini_train")
    parser.add_argument("--train-utts", type=int, default=300)
    parser.add_argument("--layouts", default="", help="comma-separated names, default or NxK (e.g. 12x256); empty: all")
    parser.add_argument("--counts", default="1,2,4,all", help="codebook counts decoded, e.g. 8 or 1,2,4,all")
    parser.add_argument("--per-speaker", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/metis_world_bench"))
    parser.add_argument("--nj", type=int, default=2)
    args = parser.parse_args()

    import soundfile as sf
    import torch
    import yaml
    from pesq import pesq
    from pystoi import stoi

    from metis_cli.codec.world import WorldCodec, WorldCodecConfig, synthesise
    from metis_cli.data.arrays import ArrayStore
    from metis_cli.data.datadir import DataDir
    from metis_cli.train.world_codec import analyse_datadir, fit_quantizer

    base = yaml.safe_load((REPO / "conf" / "mini" / "codec.yaml").read_text())["model"]
    cfg0 = WorldCodecConfig.from_dict(base)
    train_data = args.train_data or args.data / "mini_train"
    train_utts = sorted(DataDir(train_data).audio_sources())
    train_utts = sorted(
        np.random.default_rng(0).choice(train_utts, min(args.train_utts, len(train_utts)), replace=False).tolist()
    )
    test_sources = DataDir(args.data / "mini_test").audio_sources()
    test_utts = sorted(test_sources)[: args.utts or None]
    spk = DataDir(args.data / "mini_test").utt2spk
    train_cache = args.cache / (
        "train" if args.train_data is None else f"train_{train_data.parent.name}_{train_data.name}"
    )
    started = time.time()
    analyse_datadir(train_data, train_cache, cfg0, train_utts, args.nj)
    analyse_datadir(args.data / "mini_test", args.cache / "test", cfg0, test_utts, args.nj)
    print(f"analysis: {time.time() - started:.0f} s ({len(train_utts)} train, {len(test_utts)} test utterances)")
    train_store, test_store = ArrayStore(train_cache), ArrayStore(args.cache / "test")
    features = np.concatenate([np.asarray(train_store[u]) for u in train_utts if u in train_store])
    refs = {u: sf.read(test_sources[u][0], dtype="float32")[0] for u in test_utts}

    speakers = sorted({spk[u] for u in test_utts})
    per_speaker: dict[str, dict[str, tuple[float, float]]] = {}

    def score(decoded: dict, name: str) -> tuple[float, float]:
        s = {u: stoi(refs[u][: len(y)], y, 16000) for u, y in decoded.items()}
        p = {u: pesq(16000, refs[u][: len(y)], y, "wb") for u, y in decoded.items()}
        per_speaker[name] = {
            k: (float(np.mean([s[u] for u in s if spk[u] == k])), float(np.mean([p[u] for u in p if spk[u] == k])))
            for k in speakers
        }
        return float(np.mean(list(s.values()))), float(np.mean(list(p.values())))

    ceiling = score({u: synthesise(np.asarray(test_store[u]), cfg0) for u in test_utts}, "no quantisation")
    print(f"codebooks learned on {len(train_utts)} utterances of {train_data}; {len(test_utts)} test utterances")
    print("\n| layout | codebooks used | STOI | PESQ-WB | log-F0 error (cents) |\n|---|---:|---:|---:|---:|")
    print(f"| WORLD analysis/synthesis, no quantisation | - | {ceiling[0]:.3f} | {ceiling[1]:.2f} | 0 |")
    wanted = [layout(n) for n in args.layouts.split(",") if n] or list(LAYOUTS.items())
    for name, overrides in wanted:
        overrides = dict(overrides)
        zscore = overrides.pop("_zscore", False)
        model = {
            **base,
            **{k: v for k, v in overrides.items() if k != "quantizer"},
            "quantizer": {**base["quantizer"], **overrides.get("quantizer", {})},
        }
        cfg = WorldCodecConfig.from_dict(model)
        codec = WorldCodec(cfg)
        codec.fit_normalisation(features)
        if zscore:  # the first try: every dimension scaled to unit variance
            x = torch.from_numpy(features)
            codec.std.copy_(x.std(0).clamp_min(1e-3))
            codec.std[1] = 0.5
        residual = codec.to_vectors(features)
        for i in range(cfg.quantizer.n_codebooks):
            fit_quantizer(codec, residual, i, seed=i)
        all_n = cfg.quantizer.n_codebooks
        for n in sorted({all_n if c == "all" else min(int(c), all_n) for c in args.counts.split(",")}):
            decoded, cents = {}, []
            for u in test_utts:
                f = np.asarray(test_store[u])
                g = codec.decode_features(codec.encode_features(f, n))
                decoded[u] = synthesise(g, cfg)
                both = (f[:, 1] > 0.5) & (g[:, 1] > 0.5)
                if both.any():
                    cents.append(float(np.abs(f[both, 0] - g[both, 0]).mean() * 1200 / math.log(2)))
            s, p = score(decoded, f"{name}, {n} codebooks")
            cent = f"{np.mean(cents):.0f}" if cents else "-"
            print(f"| {name} | {n} | {s:.3f} | {p:.2f} | {cent} |", flush=True)
    if args.per_speaker:
        print("\nSTOI / PESQ-WB per test speaker\n")
        print("| decoding | " + " | ".join(speakers) + " |\n|---|" + "---:|" * len(speakers))
        for name, by_spk in per_speaker.items():
            print(f"| {name} | " + " | ".join(f"{by_spk[k][0]:.3f} / {by_spk[k][1]:.2f}" for k in speakers) + " |")


if __name__ == "__main__":
    main()
