"""Does training on 2 processes match training on 1, at the same global batch? Stage-1 pre-training from
webdataset shards of the embedded corpus (conf/mini/pretrain.yaml), run twice for the same steps:

  A: 1 process, train.grad_accum=2          (2 micro-batches of data.max_frames per optimizer step)
  B: 2 gloo processes (torchrun), grad_accum=1 (1 micro-batch per rank per step)

Both see 2 x data.max_frames frames per optimizer step (different utterances: each rank streams its own
shards), so their loss curves should agree within the step-to-step noise of either. Prints both curves
(every 10 steps, smoothed over 10), the mean difference against that noise, and the validation
cross-entropy of both at the end.

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
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               CUDA_VISIBLE_DEVICES="")
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
    args = parser.parse_args()
    from metis_cli.data.shards import write_shards

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = write_shards([args.data], tmp / "shards", ("ssl_tokens",), shard_mb=0.05)
        print(f"{args.data}: {index['utterances']} utterances in {len(index['shards'])} shards", flush=True)
        common = [str(REPO / "conf" / "mini" / "pretrain.yaml"), f"train.max_steps={args.steps}", f"data.max_frames={args.max_frames}",
                  "data.max_utterance_frames=1000", "data.pool_size=64", "optim.warmup_steps=10", "train.log_every=1", f"train.val_every={args.steps}",
                  f"train.ckpt_every={args.steps}", "train.max_minutes=null", "--train-data", str(tmp / "shards"), "--val-data", args.val]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        seconds_a = run([sys.executable, "-m", "metis_cli", "pretrain", common[0], str(tmp / "a"), *common[1:], "train.grad_accum=2"], 2)
        seconds_b = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                         "-m", "metis_cli", "pretrain", common[0], str(tmp / "b"), *common[1:], "train.grad_accum=1"], 1)
        (a, val_a), (b, val_b) = curve(tmp / "a"), curve(tmp / "b")
    smooth = np.ones(10) / 10
    sa, sb = np.convolve(a, smooth, "valid"), np.convolve(b, smooth, "valid")
    print(f"\nStage-1 pre-training on shards, {args.steps} steps, {2 * args.max_frames} frames per optimizer step in both runs")
    print("| step | A: 1 process, accum 2 | B: 2 gloo processes | B - A |")
    print("|---:|---:|---:|---:|")
    for i in range(0, len(sa), 10):
        print(f"| {i + 10} | {sa[i]:.3f} | {sb[i]:.3f} | {sb[i] - sa[i]:+.3f} |")
    noise = float(np.std(np.diff(a)) / np.sqrt(2))  # one step's loss noise, from A's step-to-step changes
    half = len(a) // 2
    diff = float(np.mean(b[half:] - a[half:]))
    print(f"\nsecond half: mean loss A {np.mean(a[half:]):.3f}, B {np.mean(b[half:]):.3f}; B - A = {diff:+.3f}, "
          f"{abs(diff) / (noise / np.sqrt(len(a) - half)):.1f} standard errors (one step's noise {noise:.3f})")
    if val_a is not None:
        print(f"validation CE at the end: A {val_a:.3f} bits, B {val_b:.3f} bits")
    print(f"wall time: A {seconds_a / 60:.1f} min (1 process x 2 threads), B {seconds_b / 60:.1f} min (2 processes x 1 thread)")


if __name__ == "__main__":
    main()
