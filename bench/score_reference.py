"""Reference figures of the scorers on the embedded corpus: the floor and ceiling every task is read against.

    python3 bench/score_reference.py --mini-dir data/mini --out exp/score_reference --nj 2

Scores, with the default scorers (pocketsphinx, Resemblyzer, DNSMOS):
- ground truth of mini_dev (all 7 base voices) and mini_test (held-out speakers): WER per base voice;
- speaker similarity of same-speaker vs different-speaker pairs in mini_test;
- the raw inputs of the SE, TSE and VC test sets (the floor) against their clean or ground-truth audio
  (the ceiling).
Prints tables and writes <out>/reference.json. Builds nothing: run `bash egs/tts/run.sh --stop-stage 0`
(or `metis data make-mini`) first.
"""

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from metis_cli.data.datadir import DataDir
from metis_cli.data.decode_dir import link_decode_dir
from metis_cli.score.models import cosine, load_speaker_model
from metis_cli.score.scoring import Scorers, read_per_utt, score_decode_dir

# (name, data set, task, scp): the decode dirs scored here.
BASELINES = [
    ("ground_truth_dev", "mini_dev", "tts", "wav.scp"),
    ("ground_truth_test", "mini_test", "tts", "wav.scp"),
    ("se_noisy", "mini_se_test", "se", "noisy.scp"),
    ("se_clean", "mini_se_test", "se", "wav.scp"),
    ("tse_mixture", "mini_tse_test", "tse", "mix.scp"),
    ("tse_clean", "mini_tse_test", "tse", "wav.scp"),
    ("vc_source", "mini_vc_test", "vc", "src.scp"),
    ("vc_ground_truth", "mini_vc_test", "vc", "wav.scp"),
]


def wer_per_voice(mini_dir: Path, decode_dirs: list[Path]) -> dict[str, dict]:
    voices = {}
    for line in (mini_dir / "speakers.tsv").read_text().splitlines()[1:]:
        fields = line.split("\t")
        voices[fields[0]] = fields[1]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for d in decode_dirs:
        utt2spk = DataDir(json.loads((d / "decode.json").read_text())["data_dir"]).utt2spk
        for utt, row in read_per_utt(d / "scores" / "per_utt.tsv").items():
            if row.get("failure") or not row.get("ref_words"):
                continue
            t = totals[voices[utt2spk[utt]]]
            t[0] += int(row["word_errors"])
            t[1] += int(row["ref_words"])
            t[2] += 1
    return {voice: {"wer": 100 * e / w, "words": w, "utterances": n} for voice, (e, w, n) in sorted(totals.items())}


def speaker_pairs(mini_dir: Path) -> dict[str, float]:
    dd = DataDir(mini_dir / "mini_test")
    model = load_speaker_model("resemblyzer")
    emb = {u: model.embed(dd.load_audio(u)[0]) for u in dd.utt_ids()}
    spk = dd.utt2spk
    same = [cosine(emb[a], emb[b]) for a in emb for b in emb if a < b and spk[a] == spk[b]]
    diff = [cosine(emb[a], emb[b]) for a in emb for b in emb if a < b and spk[a] != spk[b]]
    return {
        "same_speaker_mean": float(np.mean(same)),
        "same_speaker_min": float(np.min(same)),
        "different_speaker_mean": float(np.mean(diff)),
        "different_speaker_max": float(np.max(diff)),
        "pairs_same": len(same),
        "pairs_different": len(diff),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mini-dir", type=Path, default=Path("data/mini"))
    parser.add_argument("--out", type=Path, default=Path("exp/score_reference"))
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--only", default=None, help="Comma-separated names of the baselines to score (default: all).")
    args = parser.parse_args()
    chosen = [b for b in BASELINES if args.only is None or b[0] in args.only.split(",")]

    start = time.time()
    summaries = {}
    for name, data_set, task, scp in chosen:
        path = args.out / name
        if not (path / "decode.json").is_file():
            link_decode_dir(args.mini_dir / data_set, path, task, scp)
        summaries[name] = score_decode_dir(path, Scorers(), num_jobs=args.nj)
    per_voice = wer_per_voice(args.mini_dir, [args.out / "ground_truth_dev", args.out / "ground_truth_test"])
    pairs = speaker_pairs(args.mini_dir)

    print("\nWER of ground-truth audio per base voice (pocketsphinx), mini_dev + mini_test")
    print(f"{'voice':<18}{'WER %':>8}{'words':>8}{'utts':>6}")
    for voice, v in sorted(per_voice.items(), key=lambda kv: kv[1]["wer"]):
        print(f"{voice:<18}{v['wer']:8.1f}{v['words']:8d}{v['utterances']:6d}")
    print("\nSpeaker similarity (Resemblyzer) in mini_test")
    for key, value in pairs.items():
        print(f"  {key:<24}{value:8.3f}" if isinstance(value, float) else f"  {key:<24}{value:8d}")
    columns = [
        "wer",
        "cer",
        "sim",
        "dnsmos_sig",
        "dnsmos_bak",
        "dnsmos_ovrl",
        "dnsmos_p808",
        "pesq_wb",
        "stoi",
        "estoi",
        "sisdr",
    ]
    print("\nBaselines (mean over utterances; WER/CER corpus-level %)")
    print(f"{'decode dir':<20}" + "".join(f"{c[-8:]:>9}" for c in columns))
    for name, s in summaries.items():
        print(
            f"{name:<20}"
            + "".join(f"{s['metrics'][c]['mean']:9.2f}" if c in s["metrics"] else f"{'-':>9}" for c in columns)
        )
    seconds = time.time() - start
    print(f"\ntotal {seconds:.0f} s")
    report = {
        "per_voice_wer": per_voice,
        "speaker_pairs": pairs,
        "seconds": seconds,
        "baselines": {n: s["metrics"] for n, s in summaries.items()},
    }
    (args.out / "reference.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
