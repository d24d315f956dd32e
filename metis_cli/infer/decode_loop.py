"""The batched loop every decoder of a data dir shares (``metis resynth``, ``metis decode``).

Outputs go to ``<out>/wav/<utt>.wav``; a rerun skips what is written; a batch that fails (a
:class:`MetisError`) is logged and its utterances are listed in ``<out>/failed``; the loop fails only when
nothing at all was decoded. What a decoder does with a batch is its ``decode_batch``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metis_cli.data.datadir import id_path
from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)

# decode_batch(utterance ids) -> (utterance -> waveform, utterance -> why it failed)
DecodeBatch = Callable[[list[str]], tuple[dict[str, np.ndarray], dict[str, str]]]


@dataclass
class DecodeRun:
    done: dict[str, str]  # utterance -> output file, the earlier runs' included
    decoded: int  # utterances decoded by this run
    failed: dict[str, str]  # utterance -> why, this run
    seconds: float
    seconds_audio: float  # audio made by this run
    real_time_factor: float | None  # seconds of compute per second of audio made by this run

    def summary(self, out) -> dict:
        return {
            "utterances": len(self.done),
            "decoded": self.decoded,
            "failed": len(self.failed),
            "seconds": self.seconds,
            "real_time_factor": self.real_time_factor,
            "out": str(out),
        }


def output_path(out, utt: str) -> Path:
    return id_path(Path(out) / "wav", utt, ".wav")


def decode_utterances(
    out,
    utts: list[str],
    decode_batch: DecodeBatch,
    sample_rate: int,
    batch_size: int = 8,
    order=None,
    label: str = "decode",
) -> DecodeRun:
    """Decodes the utterances of ``utts`` not yet written, ``batch_size`` at a time in the order of the key
    ``order`` (e.g. their length, so that a batch wastes little padding)."""
    from metis_cli.audio import save_audio
    from metis_cli.log import progress

    out = Path(out)
    todo = sorted((u for u in utts if not output_path(out, u).is_file()), key=order)
    failed: dict[str, str] = {}
    decoded, seconds_audio, started = 0, 0.0, time.time()
    with progress() as bar:
        bar_task = bar.add_task(label, total=len(todo))
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            try:
                wavs, bad = decode_batch(batch)
            except MetisError as exc:
                wavs, bad = {}, {u: str(exc) for u in batch}
                logger.warning("batch starting with %s failed: %s", batch[0], exc)
            failed.update(bad)
            for utt, wav in wavs.items():
                save_audio(output_path(out, utt), wav, sample_rate)
                seconds_audio += len(wav) / sample_rate
                decoded += 1
            bar.advance(bar_task, len(batch))
    elapsed = time.time() - started
    done = {u: str(output_path(out, u).resolve()) for u in utts if output_path(out, u).is_file()}
    if failed:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "failed", "a") as f:
            f.writelines(f"{u}\t{r}\n" for u, r in sorted(failed.items()))
    if not done:
        raise MetisError(
            f"{out}: no utterance was decoded ({len(failed)} failed, e.g. {next(iter(failed.values()), '')}); "
            f"see {out / 'failed'}"
        )
    rtf = elapsed / seconds_audio if seconds_audio else None
    return DecodeRun(done, decoded, failed, elapsed, seconds_audio, rtf)
