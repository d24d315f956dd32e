"""What each codebook of S2A's prediction is worth: STOI of S2A resynthesis decoded with its first K codebooks
only, beside the ground-truth codes cut the same way.

    python3 bench/s2a_codebooks.py --s2a exp/s2a_mini --codec exp/codec_mini --data data/mini/mini_test --utts 15

``--s2a`` is an S2A model that predicts codes (conf/mini/s2a.yaml: `bash egs/tts/run.sh --stage 4 --s2a-config
s2a.yaml` trains it into exp/s2a_mini); the mini recipes' default, exp/s2a_mini_vector, has no codebooks to cut.

For each of the first ``--utts`` utterances: S2A generates every codebook from the utterance's ground-truth
SSL tokens with the same-speaker prompt `metis resynth` gives it (the first 3 s; the recipe's decoding
settings), the codec decodes the first K codebooks of that prediction, and STOI is taken against
the original audio. Codes past K count as absent (for the WORLD codec: the residual they would add is left
out). The accuracy of codebooks 0 and 1 against the ground truth is printed too.
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
    parser.add_argument("--s2a", type=Path, required=True)
    parser.add_argument("--codec", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--utts", type=int, default=15)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import soundfile as sf
    import torch
    from pystoi import stoi

    from metis_cli.codec.inference import load_codec
    from metis_cli.data.arrays import ArrayStore
    from metis_cli.data.datadir import DataDir
    from metis_cli.infer.generate import generate_codes, load_s2a, per_codebook_settings
    from metis_cli.infer.resynth import same_speaker_prompts

    s2a, codec = load_s2a([args.s2a]), load_codec(args.codec)
    n = codec.cfg.quantizer.n_codebooks
    tokens, codes_store = ArrayStore(args.data / "ssl_tokens"), ArrayStore(args.data / "acoustic_codes")
    data = DataDir(args.data)
    utt2spk, sources = data.read("utt2spk"), data.audio_sources()
    utts = sorted(codes_store.keys())
    prompts = same_speaker_prompts(utts, utt2spk)
    prompt_frames = int(args.prompt_seconds * codec.cfg.sample_rate / codec.cfg.hop_length)
    generator = torch.Generator().manual_seed(args.seed)
    settings = per_codebook_settings(n)
    ks = sorted({1, 2, 3, 4, n})
    predicted, truth, accuracy = {k: [] for k in ks}, {k: [] for k in ks}, []
    expected = {k: [] for k in ks} if hasattr(codec, "decode_expected") else None

    def as_long(a) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    def score(codes: torch.Tensor, ref: np.ndarray) -> float:
        return score_wav(codec.decode(codes[None])[0].numpy(), ref)

    def score_wav(wav: np.ndarray, ref: np.ndarray) -> float:
        m = min(len(wav), len(ref))
        return float(stoi(ref[:m], wav[:m], codec.cfg.sample_rate))

    for utt in utts[: args.utts]:
        prompt = prompts[utt]
        frames = min(len(tokens[utt]), len(codes_store[utt]))
        prompt_tokens = [as_long(tokens[prompt][:prompt_frames])] if prompt else [as_long(tokens[utt][:0])]
        prompt_codes = [as_long(codes_store[prompt][:prompt_frames])] if prompt else [as_long(codes_store[utt][:0])]
        codes, probs = generate_codes(
            s2a,
            [as_long(tokens[utt][:frames])],
            prompt_tokens,
            prompt_codes,
            settings,
            generator,
            True,
            None,
            return_probs=True,
        )
        codes, probs = codes[0], probs[0]
        gt = as_long(codes_store[utt][:frames])
        ref = sf.read(sources[utt][0], dtype="float32")[0]
        for k in ks:
            predicted[k].append(score(codes[:, :k], ref))
            truth[k].append(score(gt[:, :k], ref))
            if expected is not None:
                expected[k].append(score_wav(codec.decode_expected(probs[None, :, :k])[0].numpy(), ref))
        accuracy.append((codes[:, :2] == gt[:, :2]).float().mean(0).tolist())
    print(
        f"{len(accuracy)} utterances of {args.data}; accuracy of codebooks 0 and 1 against the ground truth: "
        f"{np.mean([a[0] for a in accuracy]):.3f}, {np.mean([a[1] for a in accuracy]):.3f}"
    )
    print(
        "\n| codebooks decoded | STOI, S2A's codes | STOI, S2A's expected vector | STOI, ground-truth codes "
        "|\n|---:|---:|---:|---:|"
    )
    for k in ks:
        soft = f"{np.mean(expected[k]):.3f}" if expected is not None else "-"
        print(f"| {k} | {np.mean(predicted[k]):.3f} | {soft} | {np.mean(truth[k]):.3f} |")


if __name__ == "__main__":
    main()
