"""The Python API: a fine-tuned task model, one call per task, audio back (watermarked).

    from metis_cli import Metis

    tts = Metis.from_dirs("egs/tts/exp/tts_mini")            # + the S2A and codec it was fine-tuned with
    audio = tts.tts("Hello there.", ref="prompt.wav", ref_text="What the prompt says.")
    audio.save("hello.wav")                                  # audio.wav: float32, audio.sample_rate: 16000

Every call takes paths, arrays (16 kHz mono float32) or ``(array, sample_rate)`` pairs; give a list for any
input to decode a batch (the other inputs are shared by every item), and get a list back. Decoding settings
are keyword arguments over the published defaults of the task (``metis tasks tts --field stage1_defaults``):
``stage1={"steps": 10}``, ``s2a={"steps": [20, 8, 1]}``, ``seed``. Outputs go through the same watermark as
``metis decode`` and ``metis synth`` (``Metis.from_dirs(..., watermark=False)`` turns it off, with a warning).
An Omni model answers ``tts``, ``vc``, ``se`` and ``tse``; a single-task model its own task only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metis_cli.config import read_exp_config
from metis_cli.errors import MetisError
from metis_cli.infer.options import DecodeOptions
from metis_cli.infer.task_decode import TaskInput, TaskModel, load_input
from metis_cli.task_registry import TASKS

logger = logging.getLogger(__name__)


@dataclass
class Audio:
    """One generated waveform (mono float32) and its sample rate."""

    wav: np.ndarray
    sample_rate: int
    name: str = ""

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate

    def save(self, path) -> Path:
        """Writes a 16-bit wav (or any format soundfile knows by the suffix); returns the path."""
        from metis_cli.audio import save_audio

        save_audio(path, self.wav, self.sample_rate)
        return Path(path)


def _audio(source, what: str, strict: bool) -> np.ndarray:
    """16 kHz mono float32 from a path, an array (taken as 16 kHz) or an (array, sample_rate) pair. ``strict``
    (what the model listens to, as in ``metis synth``): another rate or several channels is an error."""
    from metis_cli.audio import resample
    from metis_cli.tasks.conditions import FrameConditioner

    sr = FrameConditioner.sample_rate
    if isinstance(source, (str, Path)):
        return load_input(source, what, strict=strict)
    wav, rate = source if isinstance(source, tuple) else (source, sr)
    wav = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav, dtype=np.float32)
    if wav.ndim != 1:
        raise MetisError(f"{what}: an array of shape {wav.shape}; give mono audio, one dimension")
    if rate != sr:
        if strict:
            raise MetisError(f"{what}: {rate} Hz; this model takes {sr} Hz audio (resample it first)")
        wav = resample(wav, rate, sr).astype(np.float32)
    return wav


def _batch(inputs: dict) -> tuple[list[dict], bool]:
    """{name: value or list} -> one dict per item (lists zipped, the rest shared) and whether a list was given."""
    lengths = {k: len(v) for k, v in inputs.items() if isinstance(v, list)}
    if not lengths:
        return [inputs], False
    if len(set(lengths.values())) > 1:
        raise MetisError(f"batched inputs of different lengths: {lengths}")
    n = next(iter(lengths.values()))
    return [{k: (v[i] if k in lengths else v) for k, v in inputs.items()} for i in range(n)], True


class Metis:
    """A fine-tuned Metis task model with the S2A model(s) and codec that turn its tokens into audio."""

    def __init__(self, model: TaskModel, options: DecodeOptions):
        from metis_cli.watermark import marker_for

        self.model, self.options = model, options
        self.marker = marker_for(model.exp_dir.name, options.watermark, options.watermark_key)
        self._asr = None

    @classmethod
    def from_dirs(
        cls,
        model_dir,
        s2a=None,
        codec=None,
        *,
        device: str = "auto",
        bf16: bool | None = None,
        int8: bool = False,
        preset: str = "published",
        watermark: bool = True,
        watermark_key: str | None = None,
        codec_input: str = "auto",
        batch_size: int = 8,
        checkpoint=None,
    ) -> Metis:
        """The model of a ``metis finetune`` exp dir. ``s2a`` (a dir or a list: coarse then fine) and ``codec``
        default to those it was fine-tuned with; ``device="auto"`` takes a GPU when one is visible, ``bf16=None``
        bfloat16 where the hardware computes it (a GPU, a CPU with AMX or AVX512-BF16), ``int8=True`` int8 linear
        weights on the CPU (faster; bench/int8.py), ``preset="fast"`` fewer decoding steps
        (metis_cli.infer.options.PRESETS), ``checkpoint`` a step other than the last."""
        model_task = read_exp_config(model_dir).get("task")
        modes = TASKS[model_task].modes if model_task in TASKS else ()
        options = DecodeOptions(
            device=device,
            bf16=bf16,
            int8=int8,
            preset=preset,
            watermark=watermark,
            watermark_key=watermark_key,
            codec_input=codec_input,
            batch_size=batch_size,
        ).placed()
        s2a = [s2a] if isinstance(s2a, (str, Path)) else s2a
        model = TaskModel(model_dir, s2a, codec, None, options, checkpoint=checkpoint, mode=modes[0] if modes else None)
        return cls(model, options)

    @property
    def task(self) -> str:
        """What the model was fine-tuned for (``omni``: several tasks)."""
        return self.model.model_task

    @property
    def tasks(self) -> tuple[str, ...]:
        """The calls this model answers."""
        return TASKS[self.task].modes or (self.task,)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def device(self) -> str:
        return self.model.device

    # --- one call per task -------------------------------------------------------------------------------
    def tts(self, text, ref, ref_text=None, duration=None, **settings):
        """Says ``text`` in the voice of ``ref``; ``ref_text`` is what ``ref`` says (recognised with the
        scoring ASR when not given); ``duration`` in seconds (default: the prompt's speaking rate)."""
        return self._call("tts", settings, text=text, ref=ref, ref_text=ref_text, duration=duration)

    def vc(self, src, ref, text=None, ref_text=None, **settings):
        """The words of ``src`` in the voice of ``ref`` (``text``: an Omni model's text guidance)."""
        return self._call("vc", settings, src=src, ref=ref, text=text, ref_text=ref_text)

    def se(self, noisy, text=None, **settings):
        """The clean speech of ``noisy``."""
        return self._call("se", settings, noisy=noisy, text=text)

    def tse(self, mix, enroll, text=None, enroll_text=None, **settings):
        """The speaker of ``enroll`` extracted from ``mix``."""
        return self._call("tse", settings, mix=mix, ref=enroll, text=text, ref_text=enroll_text)

    def l2s(self, video, ref, **settings):
        """Speech for a mouth video (a path: mp4/avi/mkv, or .npy visual features) in the voice of ``ref``."""
        return self._call("l2s", settings, video=video, ref=ref)

    # --- the shared path -----------------------------------------------------------------------------------
    def _call(self, task: str, settings: dict, **inputs):
        unknown = sorted(set(settings) - {"seed", "stage1", "s2a", "names"})
        if unknown:
            raise MetisError(f"{task}(): unknown setting(s) {', '.join(unknown)}; give seed, stage1, s2a or names")
        if task not in self.tasks:
            raise MetisError(
                f"{self.model.exp_dir} holds a {self.task} model: it answers {', '.join(self.tasks)}, not {task}"
            )
        names = settings.pop("names", None)
        given = {k: v for k, v in inputs.items() if v is not None}
        if isinstance(names, list):
            given["name"] = names
        rows, batched = _batch(given)
        items = [self.task_input(task, row, row.get("name") or f"{task}_{i}") for i, row in enumerate(rows)]
        outputs = self.generate(items, mode=task, **settings)
        return outputs if batched else outputs[0]

    def task_input(self, task: str, inputs: dict, name: str) -> TaskInput:
        """A TaskInput from the API's keyword inputs (ref, ref_text, text, duration, src, noisy, mix, video)."""
        spec = TASKS[task]
        item = TaskInput(name, text=inputs.get("text"), duration=inputs.get("duration"))
        if spec.video:
            from metis_cli.video import read_visual_input

            video = inputs["video"]
            item.visual = (
                read_visual_input(video, features=Path(video).suffix == ".npy")
                if isinstance(video, (str, Path))
                else np.asarray(video)
            )
        elif spec.condition_option:
            item.condition = _audio(inputs[spec.condition_option], f"'{name}': the {spec.condition_name}", True)
        if inputs.get("ref") is not None:
            item.prompt = _audio(inputs["ref"], f"'{name}': the {spec.prompt_name or 'reference'}", False)
        item.prompt_text = inputs.get("ref_text")
        if spec.text and item.prompt_text is None and item.prompt is not None:
            item.prompt_text = self.transcribe(item.prompt)
            logger.info("transcript of the prompt of '%s' (give ref_text to set it): %r", name, item.prompt_text)
        return item

    def transcribe(self, wav: np.ndarray) -> str:
        """What a 16 kHz prompt says, by the scoring ASR (pocketsphinx), for TTS calls without ``ref_text``."""
        if self._asr is None:
            from metis_cli.score.models import load_asr

            self._asr = load_asr("pocketsphinx")
        return self._asr.transcribe(wav)

    def generate(
        self,
        items: list[TaskInput],
        mode: str | None = None,
        seed: int = 0,
        stage1: dict | None = None,
        s2a: dict | None = None,
    ) -> list[Audio]:
        """Audio for TaskInputs, decoded ``batch_size`` at a time and watermarked; ``mode``: the task an Omni
        model runs; ``stage1`` / ``s2a``: settings over the task's published ones for this call."""
        model = self.model.variant(mode=mode, stage1=stage1, s2a=s2a)
        prepared = [model.prepare(item) for item in items]  # every input checked before any decoding
        generator = torch.Generator(device=model.device).manual_seed(seed)
        out = []
        for start in range(0, len(prepared), self.options.batch_size):
            batch = prepared[start : start + self.options.batch_size]
            for p, wav in zip(batch, model.generate(batch, generator), strict=True):
                wav = self.marker(wav, model.sample_rate) if self.marker else wav
                out.append(Audio(np.asarray(wav, dtype=np.float32), model.sample_rate, p["name"]))
        return out

    def __repr__(self) -> str:
        return f"Metis({str(self.model.exp_dir)!r}, task={self.task!r}, device={self.device!r})"


def synthesize(
    exp_dir,
    s2a_dirs,
    codec_dir,
    out_path,
    item: TaskInput,
    task: str | None = None,
    options: DecodeOptions | None = None,
    mode: str | None = None,
) -> dict:
    """``metis synth``: one output file from one TaskInput, on the API's path (watermarked unless
    ``options.watermark`` is False); nothing is written if anything fails. ``mode``: the task an Omni model runs."""
    import time

    options = (options or DecodeOptions()).placed()
    model = TaskModel(exp_dir, s2a_dirs, codec_dir, task, options, mode=mode)
    metis = Metis(model, options)
    started = time.time()
    audio = metis.generate([item], mode=model.task, seed=options.seed)[0]
    elapsed = time.time() - started
    audio.save(out_path)
    return {
        "out": str(out_path),
        "seconds_audio": audio.seconds,
        "seconds": elapsed,
        "real_time_factor": elapsed / audio.seconds,
        "task": model.task,
        "watermark": metis.marker.info if metis.marker else None,
    }
