"""Decoding speed on this machine: stage 1 + S2A + codec, mini and full sizes, fp32, bf16 and int8.

    python3 bench/decode.py                       # mini and full, fp32 and bf16 (about 10 minutes)
    python3 bench/decode.py --sizes full --dtypes fp32 bf16 int8   # int8: int8 linear weights, fp32 elsewhere
    python3 bench/decode.py --device cuda --sizes full   # on a GPU (bench/gpu_check.sh runs this)

The shapes of the reference's speed table (../shared/REFERENCE.md): a 3 s prompt and a 5 s target at
50 Hz (150 + 250 frames), random weights, the published step counts: stage 1 25 steps with CFG, S2A
codebook 0 40 steps without CFG, codebook 1 16 steps and every further codebook 1 step, both with CFG.

Per configuration (each in a fresh process, so that its peak memory is its own):
- seconds per forward: stage 1 with CFG as one batch of 2 rows and as two passes, S2A without and with CFG;
- the codec decode of the target;
- the whole decode: measured (mini, and any size on a GPU: a real `generate_ssl_tokens` + `generate_codes`
  + codec decode) or, at full size on the CPU, the per-forward times multiplied by the step counts;
- the real-time factor (seconds of compute per second of generated audio) and the peak memory (resident
  memory on the CPU, allocated GPU memory on a GPU);
- the whole decode with the ``fast`` step preset (metis_cli.infer.options.PRESETS), estimated from the same
  per-forward times.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metis_cli.infer.options import PRESETS

REPO = Path(__file__).resolve().parents[1]
SIZES = {
    "mini": {
        "stage1": {"vocab_size": 128, "transformer": {"dim": 256, "n_layers": 6, "n_heads": 4, "ffn_dim": 1024}},
        "s2a": [
            {
                "ssl_vocab_size": 128,
                "n_codebooks": 8,
                "codebook_size": 256,
                "predict_codebooks": [0, 8],
                "transformer": {"dim": 256, "n_layers": 6, "n_heads": 4, "ffn_dim": 1024},
            }
        ],
        "codec": "conf/mini/codec.yaml",
    },
    "full": {
        "stage1": {"vocab_size": 8192, "transformer": {"dim": 1536, "n_layers": 16, "n_heads": 16, "ffn_dim": 6144}},
        "s2a": [
            {
                "ssl_vocab_size": 8192,
                "n_codebooks": 12,
                "codebook_size": 1024,
                "predict_codebooks": p,
                "transformer": {"dim": 1024, "n_layers": 16, "n_heads": 16, "ffn_dim": 4096},
            }
            for p in ([0, 1], [1, 12])
        ],
        "codec": "conf/full/codec.yaml",
    },
}
# The published reference implementation's whole decode, measured once elsewhere (2-core AVX-512-BF16 CPU,
# 2 threads, fp32; issue 31's table): printed for orientation with its machine named, never turned into a
# ratio with this run's figures (a comparison is measured in one run or not printed).
REFERENCE_ELSEWHERE = {"mini": 6.9, "full": 300.0}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    sync()
    start = time.time()
    for _ in range(repeats):
        fn()
    sync()
    return (time.time() - start) / repeats


def build_models(size: str, dtype_name: str, device: str):
    """Stage 1, the S2A model(s) and the codec of a size, random weights (seed 0), in eval mode."""
    import yaml

    from metis_cli.codec.inference import build_codec
    from metis_cli.infer.options import DecodeOptions
    from metis_cli.models.s2a import S2AConfig, S2AModel
    from metis_cli.models.stage1 import Stage1Config, Stage1Model

    torch.manual_seed(0)
    options = DecodeOptions(device=device, bf16=dtype_name == "bf16", int8=dtype_name == "int8")
    spec = SIZES[size]
    stage1 = options.prepare(Stage1Model(Stage1Config.from_dict(spec["stage1"])).to(device).eval())
    s2a = [options.prepare(S2AModel(S2AConfig.from_dict(c)).to(device).eval()) for c in spec["s2a"]]
    codec = build_codec(yaml.safe_load((REPO / spec["codec"]).read_text())["model"]).to(device).eval()
    return stage1, s2a, codec


def decode_once(stage1, s2a, codec, prompts, targets, prompt_codes, stage1_steps: int, s2a_steps, device: str):
    """One whole decode of a batch, as `metis decode` runs it: stage 1 (guidance, one batch), S2A, the codec."""
    from metis_cli.infer.generate import generate_codes, generate_ssl_tokens
    from metis_cli.infer.mask_predict import MaskPredictSettings

    settings = MaskPredictSettings(steps=stage1_steps, cfg_scale=2.5)
    ssl = generate_ssl_tokens(stage1, prompts, targets, settings, torch.Generator().manual_seed(0))
    codes = generate_codes(s2a, ssl, prompts, prompt_codes, s2a_steps, torch.Generator().manual_seed(0))
    for c in codes:
        codec.decode(c[None].to(device))


def estimated_total(out: dict, stage1_steps: int, s2a_steps) -> float:
    """The whole decode from the per-forward times: stage-1 steps (each with guidance, one batch), the S2A steps
    of each codebook (with or without guidance), the codec."""
    return (
        stage1_steps * out["stage1_cfg_batched"]
        + sum(s.steps for s in s2a_steps if not s.cfg_scale) * out["s2a_no_cfg"]
        + sum(s.steps for s in s2a_steps if s.cfg_scale) * out["s2a_cfg"]
        + out["codec_decode"]
    )


def measure(
    size: str, dtype_name: str, prompt: int, target: int, repeats: int, device: str = "cpu", measure_fast: bool = False
) -> dict:
    from metis_cli.infer.generate import per_codebook_settings
    from metis_cli.infer.mask_predict import MaskPredictSettings, guided_hidden

    stage1, s2a, codec = build_models(size, dtype_name, device)
    n_codebooks, vocab = s2a[0].cfg.n_codebooks, stage1.cfg.vocab_size
    length = prompt + target
    tokens = torch.randint(0, vocab, (1, length), device=device)
    valid = torch.ones(1, length, dtype=torch.bool, device=device)
    is_target = torch.arange(length, device=device)[None] >= prompt
    t = torch.tensor([0.5], device=device)
    cfg = MaskPredictSettings(cfg_scale=2.5)

    def stage1_hidden(tok, masked, val, tt, rows, unconditional):
        return stage1.hidden(tok, masked, val, tt)

    codes = torch.randint(0, s2a[0].cfg.codebook_size, (1, length, n_codebooks), device=device)
    prompt_mask = ~is_target

    def s2a_hidden(layer):
        model = next(m for m in s2a if layer in m.cfg.codebooks)

        def fn(tok, masked, val, tt, rows, unconditional):
            return model.hidden(
                codes[rows], layer, masked, val, tt, tokens[rows], prompt_mask[rows] & ~unconditional[:, None]
            )

        return fn

    out = {"size": size, "dtype": dtype_name, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    with torch.no_grad():
        out["stage1_cfg_batched"] = timed(
            lambda: guided_hidden(stage1_hidden, tokens, is_target, valid, is_target, t, cfg, True), repeats
        )
        out["stage1_cfg_two_pass"] = timed(
            lambda: guided_hidden(stage1_hidden, tokens, is_target, valid, is_target, t, cfg, False), repeats
        )
        plain = MaskPredictSettings(cfg_scale=0.0)
        out["s2a_no_cfg"] = timed(
            lambda: guided_hidden(s2a_hidden(0), tokens, is_target, valid, is_target, t, plain, True), repeats
        )
        out["s2a_cfg"] = timed(
            lambda: guided_hidden(s2a_hidden(1), tokens, is_target, valid, is_target, t, cfg, True), repeats
        )
        out["codec_decode"] = timed(lambda: codec.decode(codes[:, prompt:]), 1)
        steps = per_codebook_settings(n_codebooks)
        fast = PRESETS["fast"]
        fast_steps = per_codebook_settings(n_codebooks, fast["s2a"])
        out["estimated_total"] = estimated_total(out, 25, steps)
        out["estimated_total_fast"] = estimated_total(out, fast["stage1"]["steps"], fast_steps)

        def whole_decode(stage1_steps: int, s2a_steps) -> float:
            sync()
            start = time.time()
            prompts, prompt_codes = [tokens[0, :prompt]], [codes[0, :prompt]]
            decode_once(stage1, s2a, codec, prompts, [target], prompt_codes, stage1_steps, s2a_steps, device)
            sync()
            return time.time() - start

        if size == "mini" or device == "cuda":
            out["measured_total"] = whole_decode(25, steps)
        if size == "mini" or device == "cuda" or measure_fast:
            out["measured_total_fast"] = whole_decode(fast["stage1"]["steps"], fast_steps)
    out["total"] = out.get("measured_total", out["estimated_total"])
    out["rtf"] = out["total"] / (target / 50)
    out["total_fast"] = out.get("measured_total_fast", out["estimated_total_fast"])
    out["rtf_fast"] = out["total_fast"] / (target / 50)
    out["peak_mb"] = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ) / 2**20
    return out


def forward_flops(model, lengths: list[int]) -> float:
    """Model FLOPs of one forward over sequences of these lengths: 2 per weight of the transformer and of the one
    output head in use per position (embedding lookups and the other codebooks' heads do no arithmetic), plus
    the attention scores and the weighted values (4 * layers * T^2 * dim per sequence); the same for int8 weights."""
    cfg = model.cfg.transformer
    out = getattr(model.cfg, "vocab_size", None) or model.cfg.codebook_size
    params = sum(p.numel() for p in model.transformer.parameters()) + out * cfg.dim
    # int8 layers keep their weights packed, outside parameters(): counted through their weight() method
    params += sum(m.weight().numel() for m in model.transformer.modules() if callable(getattr(m, "weight", None)))
    return sum(2.0 * params * n + 4.0 * cfg.n_layers * n * n * cfg.dim for n in lengths)


def throughput(size: str, dtype_name: str, batch: int, repeats: int, device: str = "cpu", peak: float = 0.0) -> dict:
    """Batched decoding of ``batch`` utterances of different lengths (3 s prompts, targets spread over 3-7 s,
    the published step counts): audio seconds generated per second and model FLOP utilisation against
    ``peak`` FLOP/s."""
    from metis_cli.infer.generate import per_codebook_settings

    stage1, s2a, codec = build_models(size, dtype_name, device)
    n_codebooks, vocab = s2a[0].cfg.n_codebooks, stage1.cfg.vocab_size
    prompt = 150
    targets = [int(t) for t in np.linspace(150, 350, batch)] if batch > 1 else [250]
    prompts = [torch.randint(0, vocab, (prompt,), device=device) for _ in targets]
    prompt_codes = [torch.randint(0, s2a[0].cfg.codebook_size, (prompt, n_codebooks), device=device) for _ in targets]
    steps = per_codebook_settings(n_codebooks)

    with torch.no_grad():
        seconds = timed(
            lambda: decode_once(stage1, s2a, codec, prompts, targets, prompt_codes, 25, steps, device), repeats
        )
    lengths = [prompt + t for t in targets]
    flops = 25 * 2 * forward_flops(stage1, lengths)  # every step with guidance: two rows
    for j, setting in enumerate(steps):
        model = next(m for m in s2a if j in m.cfg.codebooks)
        flops += setting.steps * (2 if setting.cfg_scale else 1) * forward_flops(model, lengths)
    audio = sum(targets) / 50
    return {
        "size": size,
        "dtype": dtype_name,
        "batch": batch,
        "seconds": seconds,
        "audio_seconds_per_second": audio / seconds,
        "tflops_per_second": flops / seconds / 1e12,
        "mfu": flops / seconds / peak if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["mini", "full"], choices=sorted(SIZES))
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "int8"])
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--target-seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2, help="Timed forwards per measurement (after one warm-up).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--batches",
        nargs="+",
        type=int,
        help="Instead: batched decoding throughput for these batch sizes (utterances of 3-7 s), e.g. 1 8 32.",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="The device's peak (dense) TFLOP/s for the model FLOP utilisation; default: 0.16 fp32 / 0.4 bf16 on "
        "the CPU (a 2-core AVX-512-BF16 machine's matmul peak, issue 31), 989 bf16 / 67 fp32 on a GPU (H100/H200).",
    )
    parser.add_argument(
        "--measure-fast",
        action="store_true",
        help="Also run the fast preset's whole decode at full size on the CPU (otherwise estimated there).",
    )
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompt, target = int(args.prompt_seconds * 50), int(args.target_seconds * 50)
    if args.batches:
        print(f"Batched decoding, {args.device} ({args.threads} threads on the CPU), torch {torch.__version__}")
        print("| size | dtype | batch | seconds | audio s per s | model TFLOP/s | MFU |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            for dtype in args.dtypes:
                # int8: no peak assumed (the int8 matmul peak of the CPU was not measured), no MFU printed
                default = {"cpu": {"fp32": 0.16, "bf16": 0.4}, "cuda": {"fp32": 67.0, "bf16": 989.0}}[args.device]
                peak = (args.peak_tflops or default.get(dtype, 0.0)) * 1e12
                for batch in args.batches:
                    r = throughput(size, dtype, batch, args.repeats, args.device, peak)
                    mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
                    print(
                        f"| {size} | {dtype} | {batch} | {r['seconds']:.2f} | {r['audio_seconds_per_second']:.2f} | "
                        f"{r['tflops_per_second']:.3f} | {mfu} |",
                        flush=True,
                    )
        return
    if args.one:
        print(json.dumps(measure(*args.one, prompt, target, args.repeats, args.device, args.measure_fast)))
        return
    rows = []
    for size in args.sizes:
        for dtype in args.dtypes:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                size,
                dtype,
                "--prompt-seconds",
                str(args.prompt_seconds),
                "--target-seconds",
                str(args.target_seconds),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
            ] + (["--measure-fast"] if args.measure_fast else [])
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"{size} {dtype} failed:\n{result.stderr[-3000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"done: {size} {dtype}", file=sys.stderr)
    where = rows[0]["device"] if args.device == "cuda" else f"{args.threads} threads"
    print(
        f"\nDecode of a {args.target_seconds:g} s target with a {args.prompt_seconds:g} s prompt, {where}, "
        f"torch {torch.__version__}; seconds per forward, then the whole decode"
    )
    header = (
        "size",
        "dtype",
        "st1 CFG 1 batch",
        "st1 CFG 2 pass",
        "S2A fwd",
        "S2A CFG fwd",
        "codec",
        "total s",
        "RTF",
        "fast preset s",
        "fast RTF",
        "peak MB",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        total = f"{r['total']:.1f}" + ("" if "measured_total" in r else " (est.)")
        print(
            f"| {r['size']} | {r['dtype']} | {r['stage1_cfg_batched']:.3f} | {r['stage1_cfg_two_pass']:.3f} | "
            f"{r['s2a_no_cfg']:.3f} | "
            f"{r['s2a_cfg']:.3f} | {r['codec_decode']:.3f} | {total} | {r['rtf']:.2f} | "
            f"{r['total_fast']:.1f}{'' if 'measured_total_fast' in r else ' (est.)'} | {r['rtf_fast']:.2f} | "
            f"{r['peak_mb']:.0f} |"
        )
    sizes = sorted({r["size"] for r in rows})
    print(
        "\nFor orientation only, not compared: the published reference implementation's whole decode took "
        + ", ".join(f"{REFERENCE_ELSEWHERE[s]:g} s ({s})" for s in sizes)
        + " in fp32 on another machine (a 2-core AVX-512-BF16 CPU, 2 threads); run it here for a ratio."
    )


if __name__ == "__main__":
    main()
