"""Training throughput: stage-1 pre-training, S2A and codec steps from the real configs, on synthetic data.

    python3 bench/train.py                                  # CPU: mini and full, then 2 gloo processes vs 1
    python3 bench/train.py --sizes mini --steps 10
    python3 bench/train.py --device cuda --sizes full       # on a GPU (bench/gpu_check.sh runs this)

Each measurement runs in a fresh process: it builds the Trainer and the learner of `metis pretrain` /
`metis train-s2a` from conf/<size>/pretrain.yaml and s2a.yaml (full: s2a_coarse.yaml), on a data dir of
random SSL tokens and codec codes with the corpus's shape (utterances of 3-30 s at 50 Hz, the config's
vocabularies), and times ``learner.train_step`` (forward, backward, clipping, AdamW) after warm-up steps.
The neural codec (`metis codec train`, conf/mini/codec_neural.yaml and conf/full/codec.yaml, its discriminators on
from the first step when the
config enables them) trains on a data dir of noise wavs at its rate, read through its real audio loader.

Columns: seconds per step; frames/s (50 Hz positions of real, unpadded audio; x50 = seconds of audio per
second; codec: 50 Hz latent frames of its audio segments); tokens/s (input tokens: stage 1 one SSL token per
frame, S2A one SSL token plus every codebook's code per frame, codec the codes it makes); model TFLOP/s
of the transformers (6 x matmul parameters x frames + 12 x layers x dim x frames^2 per utterance for
attention; padding not counted; the codec's convolutions are not counted) and MFU against the peak that a large
matrix product
reaches on the same device in the same precision (measured first, printed; times the processes when
there are several), and peak memory.

Scaling (CPU, --scaling): 1 process with 1 thread, 1 process with 2 threads, and 2 processes (torchrun,
gloo, 1 thread each, each rank its own batch: twice the global batch). Efficiency = throughput of 2
processes / (2 x throughput of 1 process with 1 thread).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "mini": {
        "stage1": "conf/mini/pretrain.yaml",
        "s2a": "conf/mini/s2a.yaml",
        "codec": "conf/mini/codec_neural.yaml",
        "vocab": 128,
    },
    "full": {
        "stage1": "conf/full/pretrain.yaml",
        "s2a": "conf/full/s2a_coarse.yaml",
        "codec": "conf/full/codec.yaml",
        "vocab": 8192,
    },
}


def synthetic_data(root: Path, size: str, utterances: int, seed: int = 0) -> Path:
    """A data dir with ``ssl_tokens`` and ``acoustic_codes`` of random content and realistic lengths."""
    import yaml

    from metis_cli.data.arrays import ArrayWriter, write_meta

    spec = CONFIGS[size]
    quantizer = yaml.safe_load((REPO / spec["codec"]).read_text())["model"]["quantizer"]
    n_q, bins = quantizer["n_codebooks"], quantizer["codebook_size"]
    rng = np.random.default_rng(seed)
    data = root / f"{size}_data"
    tokens, codes = ArrayWriter(data / "ssl_tokens", "0"), ArrayWriter(data / "acoustic_codes", "0")
    for i in range(utterances):
        frames = int(rng.integers(150, 1500))
        tokens.write(f"utt{i:05d}", rng.integers(0, spec["vocab"], frames).astype(np.int16))
        codes.write(f"utt{i:05d}", rng.integers(0, bins, (frames, n_q)).astype(np.int16))
    tokens.close()
    codes.close()
    write_meta(data / "ssl_tokens", n_clusters=spec["vocab"])
    write_meta(data / "acoustic_codes", n_codebooks=n_q, codebook_size=bins)
    return data


CPU_FULL_MAX_FRAMES = 2000  # 40 s of audio per batch: what a full-size step on 24 GB of CPU memory holds


def synthetic_inputs(root: Path, size: str, utterances: int, models) -> None:
    """The data dirs the measured models read: tokens and codes, and noise audio for the codec."""
    synthetic_data(root, size, utterances)
    if "codec" in models:
        synthetic_audio(root, size)


def synthetic_audio(root: Path, size: str, utterances: int = 16, seconds: float = 5.0, seed: int = 0) -> Path:
    """A data dir of ``utterances`` noise wavs at the codec's sample rate (for the codec's training step)."""
    import soundfile as sf
    import yaml

    rate = yaml.safe_load((REPO / CONFIGS[size]["codec"]).read_text())["model"]["sample_rate"]
    rng = np.random.default_rng(seed)
    data = root / f"{size}_audio"
    (data / "wav").mkdir(parents=True, exist_ok=True)
    scp = []
    for i in range(utterances):
        path = data / "wav" / f"utt{i:05d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)
        scp.append(f"utt{i:05d} {path}")
    (data / "wav.scp").write_text("\n".join(scp) + "\n")
    (data / "utt2spk").write_text("".join(f"utt{i:05d} spk\n" for i in range(utterances)))
    return data


def measure_codec(size: str, device: str, steps: int, warmup: int, data: Path, bf16: bool) -> dict:
    import yaml

    from metis_cli.train.codec import CodecLearner, resolve_codec_config
    from metis_cli.train.trainer import TrainConfig, Trainer

    hide_gpus_for(device)
    config = resolve_codec_config(yaml.safe_load((REPO / CONFIGS[size]["codec"]).read_text()))
    config["train"].update(max_steps=warmup + steps, bf16=bf16, bf16_cpu=bf16, max_minutes=None)
    config["optim"]["warmup_steps"] = 1
    config["discriminator"]["start_step"] = 0
    with tempfile.TemporaryDirectory() as exp:
        trainer = Trainer(exp, config, TrainConfig.from_dict(config["train"]))
        learner = CodecLearner(trainer, config, data)
        elapsed, losses = timed_steps(learner, trainer, warmup, steps, "total")
        cfg = learner.cfg
        models = [learner.codec, learner.disc] if learner.use_disc else [learner.codec]
        params = sum(p.numel() for m in models for p in trainer.unwrap(m).parameters())
    # 50 Hz latent frames (sample_rate / hop_length); every rank trained on its own batches
    batch_frames = learner.batch_size * (learner.train_data.segment // cfg.hop_length)
    frames = steps * batch_frames * trainer.dist.world_size
    return {
        "size": size,
        "model": "codec" + (" +disc" if learner.use_disc else ""),
        "processes": trainer.dist.world_size,
        **device_and_memory(trainer.dist.device),
        "dtype": "bf16" if bf16 else "fp32",
        "params_m": params / 1e6,
        "s_per_step": elapsed / steps,
        "frames_per_s": frames / elapsed,
        "tokens_per_s": frames * cfg.quantizer.n_codebooks / elapsed,
        "padding": 0.0,
        "tflops": 0.0,
        "peak_tflops": 0.0,
        "mfu": 0.0,
        "loss_first_last": [losses[0], losses[-1]],
        "max_frames": batch_frames,
    }


def matmul_params(model: torch.nn.Module, kind: str) -> int:
    """Parameters of the matrix products one training token goes through (S2A: one codebook head)."""
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    if kind == "s2a":
        heads = model.heads
        total -= sum(h.weight.numel() for h in heads[1:])
    return total


def peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """TFLOP/s of a large square matrix product on ``device`` (the MFU denominator)."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    repeats = 10 if device.type == "cuda" else 3
    start = time.time()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.time() - start) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hide_gpus_for(device: str) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the Trainer takes a GPU whenever it sees one


def timed_steps(learner, trainer, warmup: int, steps: int, loss_key: str, after_step=None) -> tuple[float, list[float]]:
    """Runs ``warmup`` untimed steps, then ``steps`` timed ones (peak GPU memory counted from there);
    ``after_step(step)`` runs after each timed step. Returns (seconds, the timed steps' losses)."""
    dev = trainer.dist.device
    for step in range(warmup):
        learner.train_step(trainer, step)
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses = []
    start = time.time()
    for step in range(warmup, warmup + steps):
        losses.append(learner.train_step(trainer, step)[loss_key])
        if after_step is not None:
            after_step(step)
    sync(dev)
    return time.time() - start, losses


def device_and_memory(dev: torch.device) -> dict:
    """The result's device name and peak memory in MB (GPU: allocated; CPU: the process's peak RSS)."""
    if dev.type == "cuda":
        return {"device": torch.cuda.get_device_name(), "peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    return {
        "device": f"cpu x{torch.get_num_threads()}",
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(
    size: str,
    kind: str,
    device: str,
    steps: int,
    warmup: int,
    data: Path,
    bf16: bool,
    checkpointing: bool,
    max_frames: int | None = None,
) -> dict:
    import yaml

    from metis_cli.train.pretrain import PretrainLearner
    from metis_cli.train.s2a import S2ALearner
    from metis_cli.train.trainer import TrainConfig, Trainer

    hide_gpus_for(device)
    learner_class = PretrainLearner if kind == "stage1" else S2ALearner
    config = learner_class.resolve(yaml.safe_load((REPO / CONFIGS[size][kind]).read_text()))
    config["train"].update(
        max_steps=warmup + steps, bf16=bf16, bf16_cpu=bf16, max_minutes=None, gradient_checkpointing=checkpointing
    )
    config["optim"]["warmup_steps"] = 1
    if max_frames:  # a smaller batch than the config's (the full size on a CPU: 10,000 frames need > 24 GB)
        config["data"]["max_frames"] = max_frames
        config["data"]["max_utterance_frames"] = min(config["data"]["max_utterance_frames"], max_frames)
    with tempfile.TemporaryDirectory() as exp:
        trainer = Trainer(exp, config, TrainConfig.from_dict(config["train"]))
        learner = learner_class(trainer, config, [data])
        dev = trainer.dist.device
        model = trainer.unwrap(learner.model)
        flops_per_frame = 6 * matmul_params(model, kind)
        layers, dim = model.cfg.transformer.n_layers, model.cfg.transformer.dim
        counts = {"frames": 0, "padded": 0, "flops": 0.0}

        def count(step: int) -> None:
            lengths = [p.frames for p in learner.batches(step, 0, 1)]
            counts["frames"] += sum(lengths)
            counts["padded"] += len(lengths) * max(lengths)
            counts["flops"] += flops_per_frame * sum(lengths) + 12 * layers * dim * sum(n * n for n in lengths)

        elapsed, losses = timed_steps(learner, trainer, warmup, steps, "loss", count)
        frames, padded, flops = counts["frames"], counts["padded"], counts["flops"]
    world = trainer.dist.world_size
    if world > 1:  # every rank ran its own batches: add them up
        totals = torch.tensor([frames, padded, flops], dtype=torch.float64)
        torch.distributed.all_reduce(totals)
        frames, padded, flops = (float(x) for x in totals)
    codebooks = model.cfg.n_codebooks if kind == "s2a" else 0
    dtype = torch.bfloat16 if bf16 else torch.float32
    # every rank has its own device (a GPU, or on the CPU its own core): the group's peak is world x one's
    peak = peak_tflops(dev, dtype) * world if trainer.dist.main else 0.0
    return {
        "size": size,
        "model": kind,
        **device_and_memory(dev),
        "processes": world,
        "dtype": ("bf16" if bf16 else "fp32") + (" +ckpt" if checkpointing else ""),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "s_per_step": elapsed / steps,
        "frames_per_s": frames / elapsed,
        "tokens_per_s": frames * (1 + codebooks) / elapsed,
        "padding": 1 - frames / padded,
        "tflops": flops / elapsed / 1e12,
        "peak_tflops": peak,
        "mfu": flops / elapsed / 1e12 / peak if peak else 0.0,
        "loss_first_last": [losses[0], losses[-1]],
        "max_frames": config["data"]["max_frames"],
    }


def plan(args, size: str, device: str) -> tuple[int, int, int | None]:
    """(timed steps, warm-up steps, batch frames or None for the config's): a full-size model on the CPU
    takes tens of seconds per step, and its 10,000-frame batch does not fit 24 GB of memory."""
    slow = size == "full" and device == "cpu"
    return (
        args.steps or (2 if slow else 10),
        args.warmup if args.warmup is not None else (1 if slow else 2),
        args.max_frames or (CPU_FULL_MAX_FRAMES if slow else None),
    )


def run_one(args, size: str, kind: str, device: str, threads: int, processes: int = 1) -> dict:
    steps, warmup, max_frames = plan(args, size, device)
    one = [
        "--one",
        size,
        kind,
        "--device",
        device,
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--max-frames",
        str(max_frames or 0),
        "--threads",
        str(threads),
        "--data",
        str(args.data_root),
        "--precision",
        args.precision,
    ]
    if args.gradient_checkpointing:
        one.append("--gradient-checkpointing")
    if processes == 1:
        cmd = [sys.executable, __file__, *one]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            __file__,
            *one,
        ]
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        sys.exit(f"{size} {kind} ({processes} process(es)) failed:\n{result.stderr[-3000:]}")
    print(f"done: {size} {kind}, {processes} process(es) x {threads} thread(s)", file=sys.stderr, flush=True)
    return json.loads(lines[0])


def table(rows: list[dict]) -> None:
    header = (
        "size",
        "model",
        "device",
        "procs",
        "dtype",
        "params M",
        "batch frames",
        "s/step",
        "frames/s",
        "x realtime",
        "tokens/s",
        "padding",
        "model TFLOP/s",
        "peak TFLOP/s",
        "MFU",
        "peak MB",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['size']} | {r['model']} | {r['device']} | {r['processes']} | {r['dtype']} | {r['params_m']:.1f} | "
            f"{r.get('max_frames', '')} | "
            f"{r['s_per_step']:.3f} | {r['frames_per_s']:.0f} | {r['frames_per_s'] / 50:.1f} | "
            f"{r['tokens_per_s']:.0f} | "
            f"{r['padding']:.1%} | {r['tflops']:.3f} | {r['peak_tflops']:.2f} | {r['mfu']:.1%} | {r['peak_mb']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["mini", "full"], choices=sorted(CONFIGS))
    parser.add_argument("--models", nargs="+", default=["stage1", "s2a", "codec"], choices=["stage1", "s2a", "codec"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--precision", default="bf16", choices=["bf16", "fp32"], help="bf16 autocast (the configs' default) or fp32"
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="train.gradient_checkpointing: true (less memory, more compute)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="Timed steps (default: cpu mini 10, cpu full 2, cuda 10)."
    )
    parser.add_argument("--warmup", type=int, default=None, help="Untimed steps first (default: 2, cpu full 1).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help=f"Batch frames (default: the config's; full size on the CPU {CPU_FULL_MAX_FRAMES}).",
    )
    parser.add_argument("--utterances", type=int, default=400, help="Synthetic utterances per data dir.")
    parser.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="2 gloo processes vs 1 on the mini configs (default: on for --device cpu).",
    )
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        size, kind = args.one
        if kind == "codec":
            result = measure_codec(
                size, args.device, args.steps, args.warmup, Path(args.data) / f"{size}_audio", args.precision == "bf16"
            )
        else:
            result = measure(
                size,
                kind,
                args.device,
                args.steps,
                args.warmup,
                Path(args.data) / f"{size}_data",
                args.precision == "bf16",
                args.gradient_checkpointing,
                args.max_frames or None,
            )
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(result))
        return
    rows, scaling = [], []
    with tempfile.TemporaryDirectory() as root:
        args.data_root = Path(root)
        for size in args.sizes:
            synthetic_inputs(args.data_root, size, args.utterances, args.models)
            for kind in args.models:
                rows.append(run_one(args, size, kind, args.device, args.threads))
        if args.scaling if args.scaling is not None else args.device == "cpu":
            if "mini" not in args.sizes:
                synthetic_inputs(args.data_root, "mini", args.utterances, args.models)
            for kind in args.models:
                group = [
                    run_one(args, "mini", kind, "cpu", threads, processes)
                    for threads, processes in ((1, 1), (2, 1), (1, 2))
                ]
                scaling.append((kind, *group))
    print(f"\nTraining throughput, torch {torch.__version__}, synthetic tokens of the real configs' shapes")
    table(rows)
    if scaling:
        print(
            "\nScaling on this machine (mini configs): 1 process x 1 thread, 1 x 2 threads, 2 gloo processes x 1 thread"
        )
        table([r for _, *group in scaling for r in group])
        for kind, one, _, two in scaling:
            print(
                f"{kind}: 2 processes give {two['frames_per_s'] / one['frames_per_s']:.2f}x the frames/s of 1 "
                f"(efficiency {two['frames_per_s'] / (2 * one['frames_per_s']):.0%})"
            )


if __name__ == "__main__":
    main()
