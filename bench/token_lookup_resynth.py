"""What the SSL tokens alone can say, heard: resynthesis from a lookup table instead of S2A.

For each token set, the WORLD codec's vector (its VQ space, the 8 codebooks' sum) is averaged per token over
the train set; a test utterance is then rebuilt as the table's vector at each frame's token, with the
ground truth's pitch and voicing put back (so only what the tokens carry about the envelope and the
aperiodicity is measured). ``context`` tables key on the token and its two neighbours, backing off to the
token alone where the triple was seen fewer than ``--min-count`` times. Writes one decode dir per variant
under ``--out``, to be scored with ``metis score`` (WER with pocketsphinx, STOI against the original).

    python3 bench/token_lookup_resynth.py --data data/mini --codec exp/codec_mini --out exp/token_study/lookup \\
        --tokens 128=data/mini 512=exp/token_study/tok512 1024=exp/token_study/tok1024
    metis score exp/token_study/lookup/* --metrics wer,stoi

Also written: ``gt_cb0`` (the ground truth's codebook 0 and pitch codebook only: what a perfect prediction of
the codebooks S2A can learn gives) as the ceiling of this kind of decoding.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def token_dir(root: Path, name: str) -> Path:
    """A token set named by a data root (``<root>/<set>/ssl_tokens``) or a folder of ``<set>/`` stores."""
    return root / name / "ssl_tokens" if (root / name / "ssl_tokens").is_dir() else root / name


def paired(tokens, codes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for utt in codes.keys():
        if utt in tokens:
            t, c = np.asarray(tokens[utt], dtype=np.int64), np.asarray(codes[utt], dtype=np.int64)
            n = min(len(t), len(c))
            out[utt] = (t[:n], c[:n])
    return out


def fit_tables(train, codec, vocab: int):
    """Per-token and per-(previous, token, next) sums and counts of the codec vector over the train set."""
    import torch

    dim = codec.codebooks.shape[-1]
    sums, counts = torch.zeros(vocab, dim), torch.zeros(vocab)
    ctx_sum: dict[tuple, torch.Tensor] = {}
    ctx_n: dict[tuple, int] = {}
    for tok, code in train.values():
        vec = codec.dequantize(torch.from_numpy(code))
        t = torch.from_numpy(tok)
        sums.index_add_(0, t, vec)
        counts.index_add_(0, t, torch.ones(len(t)))
        padded = np.concatenate([[-1], tok, [-1]])
        for i in range(len(tok)):
            key = tuple(padded[i : i + 3])
            ctx_sum[key] = ctx_sum.get(key, 0) + vec[i]
            ctx_n[key] = ctx_n.get(key, 0) + 1
    mean_all = sums.sum(0) / counts.sum()
    table = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], mean_all)
    return table, ctx_sum, ctx_n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Data root with <set>/acoustic_codes.")
    parser.add_argument("--codec", type=Path, required=True, help="The WORLD codec's exp dir.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokens", nargs="+", required=True, help="NAME=ROOT token sets (ROOT/<set>[/ssl_tokens]).")
    parser.add_argument("--train-set", default="mini_train")
    parser.add_argument("--test-set", default="mini_test")
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument(
        "--pitch",
        choices=["truth", "table"],
        default="truth",
        help="truth: the ground truth's log-F0 and voicing put back (default); table: the table's as well "
        "(dirs named *_tpitch).",
    )
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from metis_cli.codec.inference import load_codec
    from metis_cli.data.arrays import ArrayStore
    from metis_cli.data.decode_dir import write_decode_dir

    codec = load_codec(args.codec)
    pitch = [0, 1]  # log-F0 and voicing: the ground truth's, put back
    test_codes = ArrayStore(args.data / args.test_set / "acoustic_codes")
    train_codes = ArrayStore(args.data / args.train_set / "acoustic_codes")
    sr, pitch_book = codec.cfg.sample_rate, codec.cfg.quantizer.pitch_codebook

    def write(name: str, vectors: dict[str, torch.Tensor]) -> None:
        out = args.out / name
        (out / "wav").mkdir(parents=True, exist_ok=True)
        scp = {}
        for utt, vec in vectors.items():
            wav = codec.decode_vectors(vec[None])[0].numpy()
            path = out / "wav" / f"{utt}.wav"
            sf.write(path, wav, sr)
            scp[utt] = str(path.resolve())
        write_decode_dir(out, "resynth", args.data / args.test_set, scp, codec=str(args.codec))
        print(f"{name}: {len(scp)} utterances -> {out}", flush=True)

    test_all = {u: np.asarray(test_codes[u], dtype=np.int64) for u in test_codes.keys()}
    gt = {u: codec.dequantize(torch.from_numpy(c)) for u, c in test_all.items()}
    books = sorted({0, pitch_book})
    if args.pitch == "truth":
        write("gt_cb0", {u: _first_books(codec, c, books) for u, c in test_all.items()})

    for spec in args.tokens:
        name, root = spec.split("=", 1)
        root = Path(root)
        train = paired(ArrayStore(token_dir(root, args.train_set)), train_codes)
        test = paired(ArrayStore(token_dir(root, args.test_set)), test_codes)
        vocab = 1 + max(int(t.max()) for t, _ in list(train.values()) + list(test.values()))
        table, ctx_sum, ctx_n = fit_tables(train, codec, vocab)
        for variant in ("unigram", "context"):
            vectors = {}
            for utt, (tok, _) in test.items():
                vec = table[torch.from_numpy(tok)].clone()
                if variant == "context":
                    padded = np.concatenate([[-1], tok, [-1]])
                    for i in range(len(tok)):
                        key = tuple(padded[i : i + 3])
                        if ctx_n.get(key, 0) >= args.min_count:
                            vec[i] = ctx_sum[key] / ctx_n[key]
                if args.pitch == "truth":
                    ref = gt[utt][: len(tok)]
                    vec[:, pitch] = ref[:, pitch]
                vectors[utt] = vec
            write(f"tok{name}_{variant}" + ("_tpitch" if args.pitch == "table" else ""), vectors)


def _first_books(codec, codes: np.ndarray, books: list[int]):
    import torch

    c = torch.from_numpy(codes)
    return sum(codec.codebooks[i].cpu()[c[:, i]] for i in books)


if __name__ == "__main__":
    main()
