"""What each part of the vector S2A's prediction costs: its output with one part put back from the ground truth.

The vector S2A (``model.output: vector``) predicts the WORLD codec's whole vector per frame: log-F0, voicing,
the mel-cepstrum (c0 is the frame's energy, c1.. its spectral shape) and the band aperiodicity. This script
decodes each test utterance the way ``metis resynth`` does (its own ground-truth SSL tokens, 3 s of another
utterance of its speaker as the prompt), then writes one decode dir per variant in which the parts named are
replaced by the ground truth's (the codec's dequantised codes), so that scoring the dirs side by side says
which part of the prediction the metrics lose most to. It also prints the mean squared error of each part
(in the VQ's normalised, weighted space).

    python3 bench/s2a_vector_parts.py --data data/mini/mini_test --s2a exp/s2a_mini_vector --codec exp/codec_mini \\
        --out exp/s2a_parts
    metis score exp/s2a_parts/* --metrics wer,stoi,pesq

Variants: ``pred`` (the prediction as it is), ``gt_pitch`` (log-F0 and voicing), ``gt_lf0``, ``gt_vuv``,
``gt_c0`` (energy), ``gt_pitch_c0``, ``gt_shape`` (c1..), ``gt_bap``, ``gt_all_but_shape`` (pitch, energy and
aperiodicity: only the spectral shape is the model's), ``gt`` (the codec's resynthesis). And a classic cure
for over-smoothed parameter trajectories, global variance: ``gv_shape``, ``gv_prosody`` (log-F0 and c0) and
``gv_all`` (every column but voicing) scale each column's deviation from its utterance mean so that its variance
over an utterance, averaged over the test set, is the ground truth's averaged over ``--train-codes`` (no test
ground truth is read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parts(cfg) -> dict[str, list[int]]:
    """The vector's columns by part (``metis_cli.codec.world.analyse``'s layout)."""
    order = cfg.mcep_order
    return {
        "pitch": [0, 1],
        "lf0": [0],
        "vuv": [1],
        "c0": [2],
        "shape": list(range(3, 3 + order)),
        "bap": list(range(3 + order, 3 + order + cfg.n_bands)),
    }


VARIANTS = {
    "pred": [],
    "gt_pitch": ["pitch"],
    "gt_lf0": ["lf0"],
    "gt_vuv": ["vuv"],
    "gt_c0": ["c0"],
    "gt_pitch_c0": ["pitch", "c0"],
    "gt_shape": ["shape"],
    "gt_bap": ["bap"],
    "gt_all_but_shape": ["pitch", "c0", "bap"],
    "gt": ["pitch", "c0", "shape", "bap"],
}
GV_VARIANTS = {"gv_shape": ["shape"], "gv_prosody": ["lf0", "c0"], "gv_all": ["lf0", "c0", "shape", "bap"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Data dir with ssl_tokens and acoustic_codes.")
    parser.add_argument("--s2a", type=Path, required=True, help="A vector S2A's exp dir.")
    parser.add_argument("--codec", type=Path, required=True, help="The WORLD codec's exp dir.")
    parser.add_argument("--out", type=Path, required=True)
    variant_parts = {**VARIANTS, **GV_VARIANTS}
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(variant_parts))
    parser.add_argument(
        "--train-codes",
        type=Path,
        default=Path("data/mini/mini_train/acoustic_codes"),
        help="The gv_* variants' natural variance: the first 300 utterances of these codes.",
    )
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--utts", type=int, default=0, help="Only the first N utterances (0: all).")
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from metis_cli.codec.inference import load_codec
    from metis_cli.data.arrays import ArrayStore
    from metis_cli.data.datadir import DataDir
    from metis_cli.data.decode_dir import write_decode_dir
    from metis_cli.infer.generate import load_s2a, predict_vectors
    from metis_cli.infer.resynth import same_speaker_prompts

    torch.set_grad_enabled(False)
    (model,) = load_s2a([args.s2a])
    if model.cfg.output != "vector":
        sys.exit(f"{args.s2a}: an S2A of output 'vector' is needed")
    codec = load_codec(args.codec)
    tokens, codes = ArrayStore(args.data / "ssl_tokens"), ArrayStore(args.data / "acoustic_codes")
    utts = sorted(set(tokens.keys()) & set(codes.keys()))
    data = DataDir(args.data)
    prompts = same_speaker_prompts(utts, data.read("utt2spk"))
    if args.utts:
        utts = utts[: args.utts]
    prompt_frames = int(round(args.prompt_seconds * float(tokens.meta.get("frame_rate", 50))))
    columns = parts(codec.cfg)

    predicted, truth = {}, {}
    for utt in utts:
        n = min(len(tokens[utt]), len(codes[utt]))
        src = prompts[utt]
        p = min(prompt_frames, len(tokens[src]), len(codes[src])) if src else 0
        ssl = torch.from_numpy(np.asarray(tokens[utt][:n], dtype=np.int64))
        p_ssl = torch.from_numpy(np.asarray(tokens[src][:p], dtype=np.int64)) if src else torch.zeros(0).long()
        empty = torch.zeros(0, model.cfg.n_codebooks).long()
        p_codes = torch.from_numpy(np.asarray(codes[src][:p], dtype=np.int64)) if src else empty
        predicted[utt] = predict_vectors(model, [ssl], [p_ssl], [p_codes])[0]
        truth[utt] = _vectors(codec, codes[utt][:n])

    err = torch.cat([predicted[u] - truth[u] for u in utts])
    print("part   MSE per column (normalised, weighted space)  share of the total squared error")
    total = float((err**2).sum())
    for name, cols in columns.items():
        if name == "pitch":
            continue
        sq = err[:, cols] ** 2
        print(f"{name:6s} {float(sq.mean()):.4f}  {float(sq.sum()) / total:.1%}")

    ratio = _gv_ratio(codec, args.train_codes, predicted) if set(args.variants) & set(GV_VARIANTS) else None
    sr = codec.cfg.sample_rate
    wav_scp = data.read("wav.scp")
    for variant in args.variants:
        out = args.out / variant
        (out / "wav").mkdir(parents=True, exist_ok=True)
        cols = [c for part in variant_parts[variant] for c in columns[part]]
        scp = {}
        for utt in utts:
            vec = predicted[utt].clone()
            if variant in GV_VARIANTS:
                mean = vec[:, cols].mean(0, keepdim=True)
                vec[:, cols] = mean + (vec[:, cols] - mean) * ratio[cols]
            else:
                vec[:, cols] = truth[utt][:, cols]
            path = out / "wav" / f"{utt}.wav"
            sf.write(path, codec.decode_vectors(vec[None])[0].numpy(), sr)
            scp[utt] = str(path.resolve())
        DataDir(out).write("prompt.scp", {u: wav_scp[prompts[u]] for u in utts if prompts[u] in wav_scp})
        write_decode_dir(out, "resynth", args.data, scp, s2a=str(args.s2a), codec=str(args.codec), variant=variant)
        print(f"{variant}: {len(scp)} utterances -> {out}", flush=True)


def _vectors(codec, codes):
    """A stored [frames, n_codebooks] code array -> the codec's vectors [frames, dim] (torch)."""
    import torch

    return codec.dequantize(torch.from_numpy(np.asarray(codes, dtype=np.int64)))


def _gv_ratio(codec, train_codes: Path, predicted: dict):
    """Per column: sqrt(the ground truth's variance over an utterance, averaged over the train codes, / the
    predictions' averaged over the test set)."""
    import torch

    from metis_cli.data.arrays import ArrayStore

    store = ArrayStore(train_codes)
    utts = list(store.keys())[:300]
    natural = torch.stack([_vectors(codec, store[u]).var(0) for u in utts])
    pred = torch.stack([v.var(0) for v in predicted.values()]).mean(0)
    return (natural.mean(0) / pred.clamp_min(1e-8)).sqrt()


if __name__ == "__main__":
    main()
