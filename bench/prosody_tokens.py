"""SSL features with the prosody added, for a token study: does S2A gain when the tokens carry intonation?

Writes, for each set, the phonetic front end's features (a ``metis extract-ssl`` store) with three more columns
per frame: the utterance-normalised log-F0 (interpolated through unvoiced frames), the voicing flag and c0 minus
its utterance mean, all read from the WORLD codec's codes of the data dir (so no pitch tracker runs here), each
standardised on the train set and scaled to ``--weight`` times the features' mean spread. Stage 2 then clusters
them like any features (``metis kmeans``, ``metis tokenize``). With ``--report TOKENS`` it prints instead how
much of each prosody column's variance the tokens explain (a token's train-set mean as the prediction, R^2 on the
test set). docs/world_codec.md has the study and the commands:

    python3 bench/prosody_tokens.py --weight 2 --out exp/prosody_study/feat_w2
    python3 bench/prosody_tokens.py --report exp/prosody_study/tok_w2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETS = ("mini_train", "mini_dev", "mini_test")


def prosody(codec, codes) -> np.ndarray:
    """[frames, 3]: log-F0 minus its mean over voiced frames, voicing, c0 minus its mean."""
    import torch

    f = codec.from_vectors(codec.dequantize(torch.from_numpy(np.asarray(codes, dtype=np.int64))))
    lf0, vuv, c0 = f[:, 0], f[:, 1], f[:, 2]
    voiced = vuv > 0.5
    return np.stack([lf0 - (lf0[voiced].mean() if voiced.any() else lf0.mean()), vuv, c0 - c0.mean()], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/mini"), help="Root of <set>/acoustic_codes.")
    parser.add_argument("--feats", type=Path, default=Path("data/mini/ssl/phonetic_mini_large"))
    parser.add_argument("--codec", type=Path, default=Path("exp/codec_mini"))
    parser.add_argument("--weight", type=float, default=2.0)
    parser.add_argument("--out", type=Path, help="Where the <set> feature stores go.")
    parser.add_argument("--report", type=Path, help="A token root (<root>/<set>): print R^2 of the prosody.")
    args = parser.parse_args()

    from metis_cli.codec.inference import load_codec
    from metis_cli.data.arrays import ArrayStore, ArrayWriter, write_meta

    codec = load_codec(args.codec)
    source = args.report if args.report else args.feats
    data = {}
    for name in SETS if not args.report else ("mini_train", "mini_test"):
        store, codes = ArrayStore(source / name), ArrayStore(args.data / name / "acoustic_codes")
        pairs = {}
        for utt in store.keys():
            if utt in codes:
                x, p = np.asarray(store[utt]), prosody(codec, codes[utt])
                n = min(len(x), len(p))
                pairs[utt] = (x[:n], p[:n])
        data[name] = pairs

    if args.report:
        (tt, pt), (ts, ps) = ([np.concatenate(z) for z in zip(*data[s].values(), strict=True)] for s in data)
        vocab = int(max(tt.max(), ts.max())) + 1
        sums, counts = np.zeros((vocab, 3)), np.zeros(vocab)
        np.add.at(sums, tt, pt)
        np.add.at(counts, tt, 1)
        pred = (sums / np.maximum(counts, 1)[:, None])[ts]
        r2 = 1 - ((ps - pred) ** 2).mean(0) / ps.var(0)
        print(f"R^2 given the token: relative log-F0 {r2[0]:.3f}, voicing {r2[1]:.3f}, relative c0 {r2[2]:.3f}")
        return
    if args.out is None:
        parser.error("give --out (or --report)")
    feats = np.concatenate([x for x, _ in data["mini_train"].values()]).astype(np.float32)
    pros = np.concatenate([p for _, p in data["mini_train"].values()])
    spread, mean, std = float(feats.std(0).mean()), pros.mean(0), pros.std(0)
    for name, pairs in data.items():
        with ArrayWriter(args.out / name, "1") as writer:
            for utt, (x, p) in pairs.items():
                extra = args.weight * spread * (p - mean) / std
                writer.write(utt, np.concatenate([x, extra], 1).astype(np.float32))
        write_meta(
            args.out / name,
            kind="ssl_features",
            dim=feats.shape[1] + 3,
            frame_rate=50,
            extractor=f"{args.feats} + prosody x{args.weight}",
            layer=None,
        )
        print(f"{name}: {len(pairs)} utterances -> {args.out / name}")


if __name__ == "__main__":
    main()
