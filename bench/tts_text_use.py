"""Does a fine-tuned TTS model read its text? Its validation cross-entropy with each utterance's own phones
and with the next validation utterance's phones, same masks, from a trained exp dir (nothing is trained).

    python3 bench/tts_text_use.py egs/tts/exp/tts_mini --train-data data/mini/mini_train --val-data data/mini/mini_dev

Prints ``ce_bits`` (own text), ``ce_bits_shuffled_text`` (another utterance's) and the gap: bits per masked
token that the text is worth to the model. The pre-trained model without any text is the other reference
point (its ``val_ce_bits`` in metrics.jsonl, with its own masking settings). Fine-tuning logs the same two
numbers at every validation since the shuffled-text variant exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir", type=Path, help="A fine-tuned TTS exp dir (metis finetune --task tts).")
    parser.add_argument(
        "--train-data", type=Path, required=True, help="The data dir it was fine-tuned on (for the phone vocabulary)."
    )
    parser.add_argument("--val-data", type=Path, required=True)
    args = parser.parse_args()

    from metis_cli.config import read_exp_config
    from metis_cli.train.finetune import FinetuneLearner
    from metis_cli.train.trainer import TrainConfig, Trainer

    config = read_exp_config(args.exp_dir)
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "exp"
        exp.mkdir()
        shutil.copy(args.exp_dir / "config.yaml", exp / "config.yaml")
        (exp / "checkpoints").symlink_to((args.exp_dir / "checkpoints").resolve())
        trainer = Trainer(exp, config, TrainConfig.from_dict(config.get("train", {})))
        learner = FinetuneLearner(trainer, config, [args.train_data], [args.val_data])
        if not trainer.resume():
            raise SystemExit(f"{args.exp_dir}: no checkpoint")
        result = learner.validate(trainer, exp / "val")
        trainer.release()
    gap = result["ce_bits_shuffled_text"] - result["ce_bits"]
    print(
        json.dumps(
            {
                "exp_dir": str(args.exp_dir),
                "step": trainer.step,
                **{k: round(v, 4) for k, v in result.items()},
                "text_worth_bits": round(gap, 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
