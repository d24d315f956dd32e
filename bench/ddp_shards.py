"""Does training on 2 processes match training on 1, at the same global batch? Stage-1 pre-training from
webdataset shards of the embedded corpus (conf/mini/pretrain.yaml), run twice for the same steps:

  A:  1 process, train.grad_accum=2          (2 micro-batches of data.max_frames per optimizer step)
  B:  2 gloo processes (torchrun), grad_accum=1 (1 micro-batch per rank per step)
  A': A again with the next seed (other data order and masks): how far two equivalent runs drift apart

A and B see 2 x data.max_frames frames per optimizer step (different utterances: each rank streams its
own shards), so B - A should be about as large as A' - A. Prints the curves (every 10 steps, smoothed
over 10), the second-half mean losses, and the validation cross-entropy of all three at the end.

    python3 bench/ddp_shards.py                     # 80 steps each (about 15 minutes on 2 cores)
    python3 bench/ddp_shards.py --steps 40 --data data/mini/mini_train --val data/mini/mini_dev
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], threads: int) -> float:
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        CUDA_VISIBLE_DEVICES="",
    )
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return time.time() - start


def curve(exp: Path) -> tuple[np.ndarray, float | None]:
    rows = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    losses = np.array([r["loss"] for r in sorted((r for r in rows if "loss" in r), key=lambda r: r["step"])])
    val = [r["val_ce_bits"] for r in rows if "val_ce_bits" in r]
    return losses, (val[-1] if val else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mini/mini_train", help="Data dir with ssl_tokens (recipe stage 2).")
    parser.add_argument("--val", default="data/mini/mini_dev")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--max-frames", type=int, default=2000, help="data.max_frames of one micro-batch")
    parser.add_argument(
        "--seed", type=int, default=0, help="train.seed of both runs (data order, masks, initialisation)."
    )
    parser.add_argument("--keep", type=Path, default=None, help="Keep the shards and both experiment dirs here.")
    args = parser.parse_args()
    from metis_cli.data.shards import write_shards

    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or Path(tmp)
        index = write_shards([args.data], tmp / "shards", ("ssl_tokens",), shard_mb=0.05)
        print(f"{args.data}: {index['utterances']} utterances in {len(index['shards'])} shards", flush=True)
        common = [
            str(REPO / "conf" / "mini" / "pretrain.yaml"),
            f"train.max_steps={args.steps}",
            f"data.max_frames={args.max_frames}",
            "data.max_utterance_frames=1000",
            "data.pool_size=64",
            "optim.warmup_steps=10",
            "train.log_every=1",
            f"train.val_every={args.steps}",
            f"train.ckpt_every={args.steps}",
            "train.max_minutes=null",
            f"train.seed={args.seed}",
            "--train-data",
            str(tmp / "shards"),
            "--val-data",
            args.val,
        ]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        seconds_a = run(
            [
                sys.executable,
                "-m",
                "metis_cli",
                "pretrain",
                common[0],
                str(tmp / "a"),
                *common[1:],
                "train.grad_accum=2",
            ],
            2,
        )
        seconds_b = run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_port",
                str(port),
                "-m",
                "metis_cli",
                "pretrain",
                common[0],
                str(tmp / "b"),
                *common[1:],
                "train.grad_accum=1",
            ],
            1,
        )
        seconds_a2 = run(
            [
                sys.executable,
                "-m",
                "metis_cli",
                "pretrain",
                common[0],
                str(tmp / "a2"),
                *common[1:],
                "train.grad_accum=2",
                f"train.seed={args.seed + 1}",
            ],
            2,
        )
        (a, val_a), (b, val_b), (a2, val_a2) = curve(tmp / "a"), curve(tmp / "b"), curve(tmp / "a2")
    smooth = np.ones(10) / 10
    sa, sb = np.convolve(a, smooth, "valid"), np.convolve(b, smooth, "valid")
    print(
        f"\nStage-1 pre-training on shards, {args.steps} steps, {2 * args.max_frames} frames per optimizer step in "
        "both runs"
    )
    sa2 = np.convolve(a2, smooth, "valid")
    print("| step | A: 1 process, accum 2 | B: 2 gloo processes | A': A, next seed | B - A | A' - A |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i in range(0, len(sa), 10):
        print(f"| {i + 10} | {sa[i]:.3f} | {sb[i]:.3f} | {sa2[i]:.3f} | {sb[i] - sa[i]:+.3f} | {sa2[i] - sa[i]:+.3f} |")
    half = len(a) // 2
    print(
        f"\nsecond half, mean loss: A {np.mean(a[half:]):.3f}, B {np.mean(b[half:]):.3f}, A' {np.mean(a2[half:]):.3f}; "
        f"B - A = {np.mean(b[half:] - a[half:]):+.3f}, A' - A = {np.mean(a2[half:] - a[half:]):+.3f}"
    )
    if val_a is not None:
        print(
            f"validation CE at the end: A {val_a:.3f} bits, B {val_b:.3f}, A' {val_a2:.3f} "
            f"(B - A {val_b - val_a:+.3f}, A' - A {val_a2 - val_a:+.3f})"
        )
    print(
        f"wall time: A {seconds_a / 60:.1f} min (1 process x 2 threads), B {seconds_b / 60:.1f} min (2 processes x 1 "
        "thread), "
        f"A' {seconds_a2 / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
