"""Phone accuracy per frame of phonetic front ends on a labelled data dir, clean and with SE fine-tuning's noise
and reverberation (one noisy copy of each utterance, drawn as `train-phonetic`'s data.noisy_copies draws them):
how much of the phone a front end keeps in the noise that SE and TSE decode from (docs/condition_tokens.md).

    python3 bench/phone_accuracy.py exp/phonetic_mini_large/model --data data/mini/mini_dev

Prints a markdown table: one row per model dir, clean and noisy accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="Phonetic model dirs (<exp>/model of train-phonetic).")
    parser.add_argument("--data", type=Path, required=True, help="A data dir with wav.scp and phones.ctm.")
    parser.add_argument("--seed", type=int, default=123, help="Seed of the noisy copies.")
    args = parser.parse_args()

    import torch

    from metis_cli.ssl.phonetic import load_model, phone_hits
    from metis_cli.train.phonetic import load_labelled

    torch.set_num_threads(1)
    models = {path: load_model(path) for path in args.models}
    first = next(iter(models.values()))
    index = {p: i for i, p in enumerate(first.cfg.phones)}
    data = load_labelled(args.data, index, first.cfg.n_states, noisy_copies=1, seed=args.seed)
    print(f"\n{sum('-noisy' not in k for k in data)} utterances of {args.data}\n")
    print("| front end | phone accuracy, clean | with SE's noise |\n|---|---:|---:|")
    for path, model in models.items():
        hits = {"clean": [0, 0], "noisy": [0, 0]}
        with torch.no_grad():
            for key, (feats, labels) in data.items():
                hit, frames = phone_hits(
                    model(torch.from_numpy(feats)[None])[0], torch.from_numpy(labels), model.cfg.n_states
                )
                counts = hits["noisy" if "-noisy" in key else "clean"]
                counts[0] += hit
                counts[1] += frames
        print(f"| `{path}` | {hits['clean'][0] / hits['clean'][1]:.3f} | {hits['noisy'][0] / hits['noisy'][1]:.3f} |")


if __name__ == "__main__":
    main()
