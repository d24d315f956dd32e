"""The GPU-free check of `metis convert` at the published sizes.

Writes random weights in the published (Amphion) layout and sizes (metis_cli.convert.synthetic.FULL),
converts them, loads every converted model as decoding does and runs one decode step of each stage:
stage 1 (base, LoRA-merged SE, text-prefix Omni) on a 3 s prompt + 5 s target, both S2A models, the
codec decoder on 5 s of codes and the VQ tokenizer on 5 s of features. Prints a table of shapes,
seconds and peak memory. Needs ~20 GB of disk in --work and ~12 GB of memory.

    python3 bench/convert.py                  # published sizes
    python3 bench/convert.py --size tiny      # seconds, for a smoke run
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

PARTS = ["semantic_codec", "acoustic_codec", "s2a_model", "metis_base", "metis_se", "metis_omni", "ckpt", "g2p"]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument(
        "--work", type=Path, default=None, help="Scratch folder (default: a temporary one, removed after)."
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from metis_cli.codec.inference import load_codec
    from metis_cli.config import read_exp_config
    from metis_cli.convert.convert import convert_amphion
    from metis_cli.convert.synthetic import FULL, TINY, write_published
    from metis_cli.infer.generate import load_s2a
    from metis_cli.infer.task_decode import load_task_stage1
    from metis_cli.tokenizer import load_tokenizer

    sizes = FULL if args.size == "full" else TINY
    heads = 16 if args.size == "full" else 2
    work = Path(args.work or tempfile.mkdtemp(prefix="metis_convert_"))
    rows = []
    try:
        started = time.time()
        src = write_published(work / "amphion", sizes, parts=PARTS)
        rows.append(("write random published files", "", time.time() - started))
        started = time.time()
        written = convert_amphion(src, work / "exp", n_heads=heads, lora_rank=sizes.lora_ranks["se"])
        rows.append((f"metis convert ({len(written)} outputs)", ", ".join(written), time.time() - started))
        exp = work / "exp"
        prompt, target = 150, 250  # 3 s + 5 s at 50 Hz
        frames = prompt + target
        with torch.inference_mode():
            for name in ("pretrain", "se", "omni"):
                config = read_exp_config(exp / name)
                started = time.time()
                if name == "pretrain":
                    from metis_cli.checkpoint import load_weights
                    from metis_cli.models.stage1 import Stage1Config, Stage1Model

                    model = Stage1Model(Stage1Config.from_dict(config["model"]))
                    load_weights(exp / name, "stage1", model)
                    model.eval()
                else:
                    model = load_task_stage1(exp / name, config)
                load_s = time.time() - started
                tokens = torch.randint(0, sizes.ssl_vocab, (1, frames))
                masked = torch.arange(frames)[None] >= prompt
                kwargs = {}
                if model.cfg.frame_condition_dim:
                    kwargs["frame_condition"] = torch.randn(1, frames, model.cfg.frame_condition_dim)
                if model.cfg.n_phones:
                    kwargs.update(
                        phones=torch.randint(1, model.cfg.n_phones, (1, 60)),
                        phone_valid=torch.ones(1, 60, dtype=torch.bool),
                    )
                started = time.time()
                logits = model(tokens, masked, torch.ones(1, frames, dtype=torch.bool), torch.tensor([1.0]), **kwargs)
                rows.append(
                    (f"stage 1 {name}: one step", f"{tuple(logits.shape)}, load {load_s:.1f} s", time.time() - started)
                )
                del model
            started = time.time()
            s2a = load_s2a([exp / "s2a_coarse", exp / "s2a_fine"])
            load_s = time.time() - started
            codes = torch.randint(0, sizes.codebook_size, (1, frames, sizes.n_codebooks))
            is_prompt = torch.arange(frames)[None] < prompt
            ssl = torch.randint(0, sizes.ssl_vocab, (1, frames))
            for model, layer in ((s2a[0], 0), (s2a[1], 1)):
                started = time.time()
                logits = model(
                    codes,
                    layer,
                    ~is_prompt,
                    torch.ones(1, frames, dtype=torch.bool),
                    torch.tensor([1.0]),
                    ssl,
                    is_prompt,
                )
                rows.append(
                    (
                        f"S2A codebook {layer}: one step",
                        f"{tuple(logits.shape)}, load (both) {load_s:.1f} s",
                        time.time() - started,
                    )
                )
            del s2a
            codec = load_codec(exp / "codec")
            started = time.time()
            wav = codec.decode(codes[:, prompt:])
            rows.append(
                ("codec decode, 5 s", f"{tuple(wav.shape)} at {codec.cfg.sample_rate} Hz", time.time() - started)
            )
            tokenizer = load_tokenizer(exp / "semantic_tokenizer")
            started = time.time()
            tokens = tokenizer.assign(torch.randn(target, sizes.ssl_dim).numpy())
            rows.append(
                (
                    "VQ tokenizer, 5 s of features",
                    f"{tokens.shape}, max id {int(tokens.max())} < {tokenizer.n_clusters}",
                    time.time() - started,
                )
            )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmetis convert check, {args.size} sizes, CPU x {args.threads} threads, peak memory {peak_gb():.1f} GB")
    print(f"| {'step':<40} | {'result':<60} | {'seconds':>8} |")
    print(f"|{'-' * 42}|{'-' * 62}|{'-' * 10}|")
    for step, result, seconds in rows:
        print(f"| {step:<40} | {result[:60]:<60} | {seconds:8.2f} |")


if __name__ == "__main__":
    main()
