"""Watermark robustness on the embedded corpus: imperceptibility, detection after common transformations
at 1 s, 3 s and full-length clips, payload accuracy, and false positives on unmarked speech.

    python3 bench/watermark.py --data data/mini --keys 5

Marked set: every utterance of mini_test (held-out speakers), each with its own payload. Unmarked set:
every utterance of every mini_* clean set, scored with several keys. Each clip is cut first (1 s, 3 s or
the whole utterance; utterances shorter than the length are skipped), then transformed, then detected.
TPR is reported at the default threshold (p < 1e-3) and at the score threshold that keeps the measured
false-positive rate of that clip length at or below 1%.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metis_cli.audio import resample  # noqa: E402
from metis_cli.data.datadir import DataDir  # noqa: E402
from metis_cli.watermark import WatermarkConfig, detect, embed  # noqa: E402

RATE = 16000
LENGTHS = {"1 s": 1.0, "3 s": 3.0, "full": None}


def lossy(wav: np.ndarray, fmt: str, subtype: str, level: float, **kw) -> tuple[np.ndarray, float]:
    buf = io.BytesIO()
    sf.write(buf, wav, RATE, format=fmt, subtype=subtype, compression_level=level, **kw)
    kbps = len(buf.getvalue()) * 8 / (len(wav) / RATE) / 1000
    buf.seek(0)
    out, rate = sf.read(buf, dtype="float32")
    out = resample(out, rate, RATE) if rate != RATE else out
    out = out[: len(wav)] if len(out) >= len(wav) else np.pad(out, (0, len(wav) - len(out)))
    return out, kbps


def add_noise(wav: np.ndarray, snr_db: float, rng) -> np.ndarray:
    noise = rng.standard_normal(len(wav)).astype(np.float32)
    return wav + noise * np.sqrt((wav**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/mini"))
    parser.add_argument("--keys", type=int, default=5, help="Keys for the false-positive test.")
    parser.add_argument("--limit", type=int, default=None, help="At most this many test utterances (quick runs).")
    args = parser.parse_args()
    from pesq import pesq

    config = WatermarkConfig()
    test = DataDir(args.data / "mini_test")
    utts = test.utt_ids()[: args.limit]
    rng = np.random.default_rng(0)
    kbps: dict[str, list[float]] = {"mp3": [], "opus": []}
    bank = [test.load_audio(u, RATE)[0] for u in utts]  # unmarked speech to concatenate with

    def transforms(clip: np.ndarray, marked_full: np.ndarray, i: int) -> dict[str, np.ndarray | None]:
        mp3, k1 = lossy(clip, "MP3", "MPEG_LAYER_III", 0.85, bitrate_mode="CONSTANT")
        opus, k2 = lossy(clip, "OGG", "OPUS", 0.9)
        kbps["mp3"].append(k1)
        kbps["opus"].append(k2)
        other = bank[(i + 1) % len(bank)]
        start = int(rng.integers(0, max(1, len(marked_full) - RATE)))
        return {
            "none": clip,
            "resample 16k-8k-16k": resample(resample(clip, RATE, 8000), 8000, RATE),
            "mp3 ~32 kbps": mp3,
            "opus ~32 kbps": opus,
            "noise 20 dB": add_noise(clip, 20, rng),
            "noise 10 dB": add_noise(clip, 10, rng),
            "gain +6 dB": np.clip(clip * 2.0, -1, 1),
            "gain -6 dB": clip * 0.5,
            "100 ms shift": np.concatenate([np.zeros(RATE // 10, np.float32), clip])[: len(clip)],
            "concat unmarked": np.concatenate([other[: RATE * 3 // 2], clip, other[-RATE * 3 // 2 :]]),
            "crop random 1 s": marked_full[start : start + RATE],
        }

    started = time.time()
    snrs, pesqs = [], []
    scores: dict[tuple[str, str], list[float]] = {}
    bit_accuracy: list[float] = []
    for i, wav in enumerate(bank):
        payload = int(rng.integers(0, 2**config.n_bits))
        marked = embed(wav, RATE, payload, config)
        snrs.append(10 * np.log10((wav**2).sum() / ((wav - marked) ** 2).sum()))
        pesqs.append(pesq(RATE, wav, marked, "wb"))
        # The 24 kHz path: marked at 24 kHz (a full-size decoder's rate), resampled to 16 kHz.
        marked24 = resample(embed(resample(wav, RATE, 24000), 24000, payload, config), 24000, RATE)
        for name, seconds in LENGTHS.items():
            n = len(wav) if seconds is None else int(seconds * RATE)
            if n > len(wav):
                continue
            clip = marked[:n]
            variants = transforms(clip, marked, i)
            variants["resample 24k-16k"] = marked24[:n]
            for tname, audio in variants.items():
                if tname == "crop random 1 s" and name != "1 s":
                    continue
                found = detect(audio, RATE, config)
                scores.setdefault((tname, name), []).append(-1.0 if found.score is None else found.score)
                if tname == "none" and name == "3 s" and found.payload is not None:
                    bit_accuracy.append(1 - bin(found.payload ^ payload).count("1") / config.n_bits)
        print(f"\rmarked {i + 1}/{len(utts)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    # False positives: every clean utterance of the corpus, several keys.
    null: dict[str, list[float]] = {name: [] for name in LENGTHS}
    clean_sets = [p for p in sorted(args.data.glob("mini_*")) if p.name in ("mini_train", "mini_dev", "mini_test")]
    keys = [f"bench-key-{k}" for k in range(args.keys)]
    n_null = 0
    for set_dir in clean_sets:
        dd = DataDir(set_dir)
        for utt in dd.utt_ids()[: None if args.limit is None else args.limit * 3]:
            wav = dd.load_audio(utt, RATE)[0]
            for name, seconds in LENGTHS.items():
                n = len(wav) if seconds is None else int(seconds * RATE)
                if n > len(wav):
                    continue
                for key in keys:
                    found = detect(wav[:n], RATE, WatermarkConfig(key=key))
                    null[name].append(-1.0 if found.score is None else found.score)
            n_null += 1
            print(f"\runmarked {n_null}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    default_score = -np.log(config.threshold_p)  # p = exp(-score)
    print(
        f"\nwatermark: keyed spectral ripple, ±{config.strength_db} dB, {config.modulation_hz} Hz swing, "
        f"{config.n_bits}-bit payload; "
        f"{len(utts)} marked test utterances, {n_null} unmarked utterances x {len(keys)} keys; "
        f"{time.time() - started:.0f} s"
    )
    print(
        f"imperceptibility: SNR of the mark {np.mean(snrs):.1f} dB (min {np.min(snrs):.1f}); "
        f"PESQ-WB marked vs unmarked {np.mean(pesqs):.3f} (min {np.min(pesqs):.3f}, 5th percentile "
        f"{np.percentile(pesqs, 5):.3f})"
    )
    print(f"payload bit accuracy, clean 3 s clips: {100 * np.mean(bit_accuracy):.2f}% ({len(bit_accuracy)} clips)")
    print(
        f"lossy coding bitrates: mp3 {np.mean(kbps['mp3']):.1f} kbps, opus {np.mean(kbps['opus']):.1f} kbps (Ogg "
        "container included)"
    )
    thresholds = {}
    print("\nfalse positives on unmarked speech")
    print(f"{'clip':<6}{'clips':>8}{'FPR @ p<1e-3':>15}{'score @ FPR 1%':>16}")
    for name, values in null.items():
        v = np.array(values)
        thresholds[name] = max(float(np.percentile(v, 99)), 0.0) if len(v) else default_score
        print(f"{name:<6}{len(v):>8}{100 * np.mean(v > default_score):>14.2f}%{thresholds[name]:>16.2f}")
    print("\ntrue-positive rate (%) at p<1e-3 | at the measured FPR-1% threshold")
    names = list(dict.fromkeys(t for t, _ in scores))
    print(f"{'transformation':<22}" + "".join(f"{n:>18}" for n in LENGTHS))
    for tname in names:
        cells = []
        for name in LENGTHS:
            values = np.array(scores.get((tname, name), []))
            cells.append(
                "-"
                if len(values) == 0
                else f"{100 * np.mean(values > default_score):.1f} | {100 * np.mean(values > thresholds[name]):.1f}"
            )
        print(f"{tname:<22}" + "".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
