"""Oracle SSL tokens: each frame's true phone part from the corpus's ``phones.ctm``, as a token store.

The token a perfect phonetic front end would give: ``phone * 3 + part`` (the third of the phone the frame's centre
falls in, as ``metis train-phonetic`` labels its frames), and one more token for frames no timing covers. The
stores have the frame counts of the recipe's tokens (``--like``), so S2A and the lookup study read them in their
place; docs/world_codec.md trains S2A on them to tell the front end's errors from S2A's.

    python3 bench/oracle_tokens.py --data data/mini --out exp/oracle_study/tok
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
    parser.add_argument("--data", type=Path, default=Path("data/mini"), help="Root of <set>/phones.ctm.")
    parser.add_argument("--out", type=Path, required=True, help="Where the <set> token stores go.")
    parser.add_argument("--sets", nargs="+", default=["mini_train", "mini_dev", "mini_test"])
    parser.add_argument("--like", default="ssl_tokens", help="The token store of each set whose lengths to match.")
    parser.add_argument("--parts", type=int, default=3, help="Parts per phone (1: the phone alone).")
    args = parser.parse_args()

    from metis_cli.data.arrays import ArrayStore, ArrayWriter, write_meta
    from metis_cli.data.datadir import read_ctm
    from metis_cli.ssl.phonetic import IGNORE, frame_targets

    train = read_ctm(args.data / args.sets[0] / "phones.ctm")
    phones = {p: i for i, p in enumerate(sorted({t.token for items in train.values() for t in items}))}
    none = len(phones) * args.parts  # frames with no timing, and phones the first set never has
    for name in args.sets:
        timings, like = read_ctm(args.data / name / "phones.ctm"), ArrayStore(args.data / name / args.like)
        with ArrayWriter(args.out / name, "part-1") as writer:
            for utt in like.keys():
                tokens = frame_targets(timings.get(utt, []), len(like[utt]), phones, args.parts)
                writer.write(utt, np.where(tokens == IGNORE, none, tokens).astype(np.int16))
        write_meta(args.out / name, kind="ssl_tokens", n_clusters=none + 1, frame_rate=50)
        print(f"{name}: {len(like)} utterances, {none + 1} tokens -> {args.out / name}")


if __name__ == "__main__":
    main()
