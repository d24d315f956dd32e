"""The phonetic front end's phone-part posteriors as SSL features, for a token study.

The front end's classifier is linear on its bottleneck (the features the recipes cluster), so each stored
bottleneck frame gives its phone-part log-posteriors (``logpost``, floored at -20), posteriors (``prob``) or most
likely phone part (``argmax``, written as a token store with no k-means). The feature stores are then clustered
like any (``metis kmeans``, ``metis tokenize``); docs/world_codec.md compares the tokens through the lookup table.

    python3 bench/phone_posterior_feats.py --kind logpost --out exp/post_study/feat_logpost
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["logpost", "prob", "argmax"], required=True)
    parser.add_argument("--model", type=Path, default=Path("exp/phonetic_mini_large/model"))
    parser.add_argument("--feats", type=Path, default=Path("data/mini/ssl/phonetic_mini_large"))
    parser.add_argument("--out", type=Path, required=True, help="Where the <set> stores go.")
    parser.add_argument("--sets", nargs="+", default=["mini_train", "mini_dev", "mini_test"])
    args = parser.parse_args()

    import torch

    from metis_cli.data.arrays import ArrayStore, ArrayWriter, write_meta
    from metis_cli.ssl.phonetic import load_model

    classifier = load_model(args.model).classifier
    n_classes = classifier.out_features
    for name in args.sets:
        store = ArrayStore(args.feats / name)
        with ArrayWriter(args.out / name, "1") as writer, torch.inference_mode():
            for utt in store.keys():
                logits = classifier(torch.from_numpy(np.asarray(store[utt], dtype=np.float32)))
                if args.kind == "argmax":
                    writer.write(utt, logits.argmax(-1).numpy().astype(np.int64))
                    continue
                y = torch.log_softmax(logits, -1).clamp_min(-20) if args.kind == "logpost" else logits.softmax(-1)
                writer.write(utt, y.numpy().astype(np.float32))
        if args.kind == "argmax":
            write_meta(args.out / name, kind="ssl_tokens", n_clusters=n_classes, frame_rate=50)
        else:
            extractor = f"{args.model} phone-part {args.kind}"
            write_meta(
                args.out / name, kind="ssl_features", dim=n_classes, frame_rate=50, extractor=extractor, layer=None
            )
        print(f"{name}: {len(store.keys())} utterances -> {args.out / name}")


if __name__ == "__main__":
    main()
