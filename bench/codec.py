"""Codec speed and quality on this machine.

    python3 bench/codec.py --exp exp/codec_mini --data data/mini/mini_test

1. Real-time factors (seconds of compute per second of audio) of encode and decode, fp32 on the CPU,
   for the trained mini codec and a full-size (published shape, random weights) codec, on 10 s of audio.
2. Quality on the test set (unseen speakers) against the original audio: STOI, ESTOI, PESQ-WB, PESQ-NB,
   MCD, for the mini codec and for Opus at the lowest bitrate libsndfile writes (compression level 1.0),
   with the bitrate each one spends.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from metis_cli.codec.inference import load_codec
from metis_cli.codec.model import Codec, CodecConfig
from metis_cli.data.datadir import DataDir
from metis_cli.score import metrics as M

REPO = Path(__file__).resolve().parents[1]


def rtf(codec: Codec, seconds: float) -> tuple[float, float]:
    wav = 0.1 * torch.randn(1, int(seconds * codec.cfg.sample_rate))
    codec.encode(wav[:, : codec.cfg.sample_rate])  # warm-up
    start = time.time()
    codes = codec.encode(wav)
    encode = (time.time() - start) / seconds
    start = time.time()
    codec.decode(codes)
    return encode, (time.time() - start) / seconds


def opus_round_trip(wav: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.opus")
        sf.write(path, wav, rate, format="OGG", subtype="OPUS", compression_level=1.0)
        kbps = os.path.getsize(path) * 8 / (len(wav) / rate) / 1000
        decoded, _ = sf.read(path, dtype="float32")
    return decoded[: len(wav)], kbps


def quality(reference: np.ndarray, estimate: np.ndarray) -> dict:
    n = min(len(reference), len(estimate))
    ref, est = reference[:n], estimate[:n]
    return {**M.stoi_scores(ref, est), **M.pesq_scores(ref, est), "mcd": M.mcd(ref, est)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="exp/codec_mini")
    parser.add_argument("--data", default="data/mini/mini_test")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-utts", type=int, default=100)
    args = parser.parse_args()

    mini = load_codec(args.exp)
    full = Codec(
        CodecConfig.from_dict(yaml.safe_load((REPO / "conf" / "full" / "codec.yaml").read_text())["model"])
    ).eval()
    print(f"real-time factors, fp32, {torch.get_num_threads()} threads, {args.seconds:.0f} s of audio")
    print(f"{'codec':<34}{'encode RTF':>12}{'decode RTF':>12}")
    for name, codec in (("mini (trained)", mini), ("full (published shape, random)", full)):
        enc, dec = rtf(codec, args.seconds)
        print(f"{name:<34}{enc:>12.4f}{dec:>12.4f}", flush=True)

    data = DataDir(args.data)
    rate = mini.cfg.sample_rate
    rows = {"mini codec": [], "opus": []}
    opus_kbps = []
    for utt in data.utt_ids()[: args.max_utts]:
        wav, _ = data.load_audio(utt, rate)
        with torch.no_grad():
            resynth = mini.decode(mini.encode(torch.from_numpy(wav)[None]))[0].numpy()
        rows["mini codec"].append(quality(wav, resynth))
        decoded, kbps = opus_round_trip(wav, rate)
        rows["opus"].append(quality(wav, decoded))
        opus_kbps.append(kbps)
    bitrate = {"mini codec": mini.cfg.bitrate / 1000, "opus": float(np.mean(opus_kbps))}
    print(f"\nquality on {args.data} ({len(rows['opus'])} utterances, unseen speakers), against the originals")
    keys = ["stoi", "estoi", "pesq_wb", "pesq_nb", "mcd"]
    print(f"{'codec':<14}{'kbps':>7}" + "".join(f"{k:>10}" for k in keys))
    for name, values in rows.items():
        means = {k: np.mean([v[k] for v in values]) for k in keys}
        print(f"{name:<14}{bitrate[name]:>7.2f}" + "".join(f"{means[k]:>10.3f}" for k in keys))
    print("(opus: libsndfile's lowest setting; its kbps includes the Ogg container)")


if __name__ == "__main__":
    main()
