"""What the fine-tuning inputs of the audio-conditioned tasks (VC, SE, TSE) leave of the content: the share
of frames whose SSL token (the front end and tokenizer of a fine-tuned exp dir) is the same for the clean
utterance and for the input made from it, for each of VC's pitch-shift methods.

    python3 bench/condition_tokens.py --exp egs/vc/exp/vc_mini --data data/mini/mini_dev

VC fine-tuning trains on (features of the perturbed target -> tokens of the clean target), and decoding
feeds the features of a clean recording of another speaker. A perturbation that changes the tokens of the
same words teaches the model to undo its artifacts, not to keep the content; one that keeps them and
still changes the voice is what the task needs. Rows: each method alone (its full range of pitch), the
formant warp alone, both as the fine-tuning draws them, and WORLD analysis-synthesis unchanged; then, to
compare, SE's and TSE's fine-tuning inputs (noise and reverberation; an interferer). Prints a markdown table
(agreement, seconds to make the input per utterance).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--exp", type=Path, required=True, help="A fine-tuned VC exp dir (config.yaml, stats, k-means)."
    )
    parser.add_argument("--data", type=Path, required=True, help="A data dir whose wav.scp is read.")
    parser.add_argument("--utterances", type=int, default=30, help="This many, spread over the sorted list.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    import yaml

    from metis_cli.audio import load_audio
    from metis_cli.data.datadir import read_table
    from metis_cli.tasks.augment import (
        BABBLE_TALKERS,
        AugmentConfig,
        add_noise_and_reverb,
        mix_interferer,
        perturb_timbre,
        world_pitch_shift,
    )
    from metis_cli.tasks.conditions import FrameConditioner

    torch.set_num_threads(1)
    ssl = yaml.safe_load((args.exp / "config.yaml").read_text())["ssl"]
    conditioner = FrameConditioner(ssl)
    sr = conditioner.sample_rate
    scp = read_table(args.data / "wav.scp")
    utts = sorted(scp)[:: max(1, len(scp) // args.utterances)][: args.utterances]
    wavs = {u: load_audio(scp[u], sr, utt_id=u, commands=True)[0] for u in utts}
    clean = {u: conditioner.tokens(conditioner(w)) for u, w in wavs.items()}

    def row(name, perturb):
        perturb(next(iter(wavs.values())), np.random.default_rng(args.seed))  # imports and caches outside the clock
        rng = np.random.default_rng(args.seed)
        same = total = 0
        seconds = 0.0
        for u, wav in wavs.items():
            start = time.perf_counter()
            out = perturb(wav, rng)
            seconds += time.perf_counter() - start
            tokens = conditioner.tokens(conditioner(out, len(clean[u])))
            same += int((tokens == clean[u]).sum())
            total += len(tokens)
        print(f"| {name} | {same / total:.3f} | {seconds / len(wavs):.3f} |", flush=True)

    default = AugmentConfig()
    print(f"{len(wavs)} utterances of {args.data}, tokens of {args.exp}\n")
    print("| perturbation | token agreement | s / utterance |\n|---|---|---|")
    row("none (the clean audio)", lambda w, rng: w)
    row("WORLD analysis-synthesis, F0 unchanged", lambda w, rng: world_pitch_shift(w, 0.0, sr))
    for method in ("phase_vocoder", "world"):
        pitch = AugmentConfig(pitch_shift=method, formant_ratio=(1.0, 1.0))
        row(
            f"pitch only, {method}, {default.pitch_semitones} semitones",
            lambda w, rng, c=pitch: perturb_timbre(w, rng, c, sr),
        )
    formants = AugmentConfig(pitch_shift="none")
    row(f"formants only, ratio {default.formant_ratio}", lambda w, rng: perturb_timbre(w, rng, formants, sr))
    for method in ("phase_vocoder", "world"):
        both = AugmentConfig(pitch_shift=method)
        row(f"pitch ({method}) and formants", lambda w, rng, c=both: perturb_timbre(w, rng, c, sr))
    # For comparison, the other tasks' fine-tuning inputs (another utterance of the set as talker / interferer)
    others = list(wavs.values())

    def other(rng):
        return others[rng.integers(len(others))]

    row(
        f"SE input: noise at {default.snr_db} dB, reverb p {default.reverb_prob}",
        lambda w, rng: add_noise_and_reverb(w, rng, default, sr, [other(rng) for _ in range(BABBLE_TALKERS)]),
    )
    row(f"TSE input: an interferer at {default.sir_db} dB", lambda w, rng: mix_interferer(w, other(rng), rng, default))


if __name__ == "__main__":
    main()
