"""The parametric (WORLD) codec's quantiser layouts, compared on the embedded corpus.

    python3 bench/world_codec.py --data data/mini --utts 20            # after stage 0 of any recipe

Learns each layout's codebooks on a seeded pick of ``mini_train`` utterances (``--train-utts``, as the
recipe's ``data.max_utterances``) and encodes/decodes the first ``--utts`` utterances of ``mini_test``,
printing STOI and PESQ-WB after the first 1, 2, 4 and all codebooks, and the log-F0 error on frames voiced
in both. WORLD analysis/synthesis without quantisation is the ceiling row. Features are cached in
``--cache`` (default /tmp/metis_world_bench), so a second run only fits and decodes.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "mini")
    parser.add_argument("--utts", type=int, default=20)
    parser.add_argument("--train-utts", type=int, default=300)
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
    train_utts = sorted(DataDir(args.data / "mini_train").audio_sources())
    train_utts = sorted(
        np.random.default_rng(0).choice(train_utts, min(args.train_utts, len(train_utts)), replace=False).tolist()
    )
    test_sources = DataDir(args.data / "mini_test").audio_sources()
    test_utts = sorted(test_sources)[: args.utts]
    started = time.time()
    analyse_datadir(args.data / "mini_train", args.cache / "train", cfg0, train_utts, args.nj)
    analyse_datadir(args.data / "mini_test", args.cache / "test", cfg0, test_utts, args.nj)
    print(f"analysis: {time.time() - started:.0f} s ({len(train_utts)} train, {len(test_utts)} test utterances)")
    train_store, test_store = ArrayStore(args.cache / "train"), ArrayStore(args.cache / "test")
    features = np.concatenate([np.asarray(train_store[u]) for u in train_utts if u in train_store])
    refs = {u: sf.read(test_sources[u][0], dtype="float32")[0] for u in test_utts}

    def score(decoded: dict) -> tuple[float, float]:
        s = [stoi(refs[u][: len(y)], y, 16000) for u, y in decoded.items()]
        p = [pesq(16000, refs[u][: len(y)], y, "wb") for u, y in decoded.items()]
        return float(np.mean(s)), float(np.mean(p))

    ceiling = score({u: synthesise(np.asarray(test_store[u]), cfg0) for u in test_utts})
    print("\n| layout | codebooks used | STOI | PESQ-WB | log-F0 error (cents) |\n|---|---:|---:|---:|---:|")
    print(f"| WORLD analysis/synthesis, no quantisation | - | {ceiling[0]:.3f} | {ceiling[1]:.2f} | 0 |")
    for name, overrides in LAYOUTS.items():
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
        for n in sorted({1, 2, 4, cfg.quantizer.n_codebooks}):
            decoded, cents = {}, []
            for u in test_utts:
                f = np.asarray(test_store[u])
                g = codec.decode_features(codec.encode_features(f, n))
                decoded[u] = synthesise(g, cfg)
                both = (f[:, 1] > 0.5) & (g[:, 1] > 0.5)
                if both.any():
                    cents.append(float(np.abs(f[both, 0] - g[both, 0]).mean() * 1200 / math.log(2)))
            s, p = score(decoded)
            cent = f"{np.mean(cents):.0f}" if cents else "-"
            print(f"| {name} | {n} | {s:.3f} | {p:.2f} | {cent} |", flush=True)


if __name__ == "__main__":
    main()
