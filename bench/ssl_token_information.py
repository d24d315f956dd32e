"""How much the SSL tokens say about each acoustic codebook, with no model: held-out entropy (bits) of the codes,
alone and given the SSL token of the same frame, from train-set counts.

    python3 bench/ssl_token_information.py --data data/mini                        # the recipe's tokens
    python3 bench/ssl_token_information.py --data data/mini --tokens /tmp/tok512  # other tokens of the same sets

For codebook k: H(code) from the train set's unigram counts, and H(code | SSL token) from counts per token
interpolated with the unigram (weight n / (n + 5) for a token seen n times), both measured on the dev set.
It bounds what a frame-wise predictor learns from the tokens alone; S2A also sees the neighbouring tokens
and the prompt, so it can go below the second column, but a codebook whose entropy the token does not lower
(pitch, the residual codebooks) has to come from elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def frames(tokens_dir: Path, codes_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from metis_cli.data.arrays import ArrayStore

    tokens, codes = ArrayStore(tokens_dir), ArrayStore(codes_dir)
    t, c = [], []
    for utt in tokens.keys():
        if utt not in codes:
            continue
        a, b = np.asarray(tokens[utt], dtype=np.int64), np.asarray(codes[utt], dtype=np.int64)
        n = min(len(a), len(b))
        t.append(a[:n])
        c.append(b[:n])
    return np.concatenate(t), np.concatenate(c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, required=True, help="Data root with <set>/ssl_tokens and <set>/acoustic_codes."
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        default=None,
        help="Other SSL tokens: a folder holding <set>/ (default: <data>/<set>/ssl_tokens).",
    )
    parser.add_argument("--train-set", default="mini_train")
    parser.add_argument("--dev-set", default="mini_dev")
    args = parser.parse_args()

    def token_dir(name):
        return args.tokens / name if args.tokens else args.data / name / "ssl_tokens"

    t_train, c_train = frames(token_dir(args.train_set), args.data / args.train_set / "acoustic_codes")
    t_dev, c_dev = frames(token_dir(args.dev_set), args.data / args.dev_set / "acoustic_codes")
    vocab = int(max(t_train.max(), t_dev.max())) + 1
    size = int(max(c_train.max(), c_dev.max())) + 1
    print(f"{len(t_train)} train and {len(t_dev)} dev frames; {vocab} SSL tokens; codebooks of {size}")
    print("\n| codebook | H(code) bits | H(code given SSL token) bits |\n|---:|---:|---:|")
    for k in range(c_train.shape[1]):
        y_train, y_dev = c_train[:, k], c_dev[:, k]
        unigram = (np.bincount(y_train, minlength=size) + 0.5) / (len(y_train) + 0.5 * size)
        joint = np.zeros((vocab, size))
        np.add.at(joint, (t_train, y_train), 1)
        seen = joint.sum(1)
        weight = seen / (seen + 5.0)
        conditional = np.where(seen[:, None] > 0, joint / np.maximum(seen[:, None], 1), 0.0)
        p = weight[t_dev] * conditional[t_dev, y_dev] + (1 - weight[t_dev]) * unigram[y_dev]
        print(f"| {k} | {-np.mean(np.log2(unigram[y_dev])):.2f} | {-np.mean(np.log2(p)):.2f} |")


if __name__ == "__main__":
    main()
