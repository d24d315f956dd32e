"""int8 linear weights and bfloat16 against float32: how often trained models still predict the same tokens.

    python3 bench/int8.py --stage1 exp/pretrain_mini --s2a exp/s2a_mini --data data/mini/mini_test --utts 40

``--s2a`` is an S2A model that predicts codes (conf/mini/s2a.yaml: `bash egs/tts/run.sh --stage 4 --s2a-config
s2a.yaml` trains it into exp/s2a_mini); the mini recipes' default, exp/s2a_mini_vector, regresses vectors instead.

The speed of the same precisions is bench/decode.py's (``--dtypes fp32 bf16 int8``). Here every utterance of
``--data`` (the first ``--utts``) gets one forward per model and precision, with a mask drawn as in training
(seeded: the same mask for every precision): stage 1 predicts the masked SSL tokens, S2A each codebook's masked
codes given the lower codebooks. Printed per model (S2A: per codebook) over the masked positions:
- top-1 agreement with float32 (the token argmax would pick);
- KL(float32 || precision) in bits per position (how far the sampled distribution moves);
- accuracy against the ground truth, for float32 and the precision.
"""

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRECISIONS = ("bf16", "int8")


def precision_models(load, precision: str):
    from metis_cli.infer.options import DecodeOptions

    options = DecodeOptions(device="cpu", bf16=precision == "bf16", int8=precision == "int8").placed()
    return options.prepare(load())


def compare(logits_ref: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> dict:
    """Sums over positions: argmax agreement, KL bits, correct (reference and precision), count."""
    ref, other = logits_ref.float().log_softmax(-1), logits.float().log_softmax(-1)
    kl = (ref.exp() * (ref - other)).sum(-1) / torch.log(torch.tensor(2.0))
    return {
        "agree": float((ref.argmax(-1) == other.argmax(-1)).sum()),
        "kl_bits": float(kl.sum()),
        "correct_fp32": float((ref.argmax(-1) == target).sum()),
        "correct": float((other.argmax(-1) == target).sum()),
        "count": float(target.numel()),
    }


def add(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", type=Path, help="stage-1 exp dir (metis pretrain)")
    parser.add_argument("--s2a", type=Path, help="S2A exp dir (metis train-s2a)")
    parser.add_argument("--data", type=Path, required=True, help="data dir with ssl_tokens/ (and acoustic_codes/)")
    parser.add_argument("--utts", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from metis_cli.data.batching import Piece, UtteranceArrays
    from metis_cli.infer.generate import load_s2a, load_stage1
    from metis_cli.models.masking import MaskingConfig, sample_masks

    kinds = ("ssl_tokens", "acoustic_codes") if args.s2a else ("ssl_tokens",)
    arrays = UtteranceArrays([args.data], kinds)
    utts = sorted(arrays.lengths)[: args.utts]
    models = {}
    if args.stage1:
        models["stage 1"] = {p: precision_models(lambda: load_stage1(args.stage1), p) for p in ("fp32",) + PRECISIONS}
    if args.s2a:
        models["S2A"] = {p: precision_models(lambda: load_s2a([args.s2a])[0], p) for p in ("fp32",) + PRECISIONS}
    totals: dict[tuple, dict] = {}
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for utt in utts:
            item = arrays.get(Piece(utt, 0, arrays.lengths[utt]))
            tokens = torch.as_tensor(item["ssl_tokens"], dtype=torch.long)[None]
            length = tokens.shape[1]
            t, prompts, masked = sample_masks(torch.tensor([length]), MaskingConfig(), generator)
            valid = torch.ones(1, length, dtype=torch.bool)
            if "stage 1" in models:
                logits = {p: m(tokens, masked, valid, t)[masked] for p, m in models["stage 1"].items()}
                for p in PRECISIONS:
                    add(totals.setdefault(("stage 1", "-", p), {}), compare(logits["fp32"], logits[p], tokens[masked]))
            if "S2A" in models:
                codes = torch.as_tensor(item["acoustic_codes"], dtype=torch.long)[None]
                prompt = torch.arange(length)[None] < prompts[:, None]
                for layer in models["S2A"]["fp32"].cfg.codebooks:
                    logits = {
                        p: m(codes, layer, masked, valid, t, tokens, prompt)[masked] for p, m in models["S2A"].items()
                    }
                    target = codes[..., layer][masked]
                    for p in PRECISIONS:
                        add(totals.setdefault(("S2A", layer, p), {}), compare(logits["fp32"], logits[p], target))
    print(f"{len(utts)} utterances of {args.data}, torch {torch.__version__}, seed {args.seed}")
    print(
        "| model | codebook | precision | positions | top-1 agreement with fp32 | KL bits | accuracy fp32 | accuracy |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for (model, layer, precision), s in totals.items():
        n = s["count"]
        print(
            f"| {model} | {layer} | {precision} | {int(n)} | {100 * s['agree'] / n:.1f}% | {s['kl_bits'] / n:.4f} | "
            f"{100 * s['correct_fp32'] / n:.1f}% | {100 * s['correct'] / n:.1f}% |"
        )


if __name__ == "__main__":
    main()
