"""Decoding with a fine-tuned task model: ``metis decode --task T`` over a data dir (stage 6) and
``metis synth`` for single files.

One utterance goes: inputs (16 kHz) -> SSL tokens of the prompt, SSL features of the condition audio,
phones of the text -> stage 1 (mask-predict with the task's condition) -> S2A (with the prompt's
codec codes as the acoustic prompt) -> codec decoder -> waveform.

| task | condition (frame-aligned with the output) | prompt (the voice) | output length |
|------|------------------------------------------|--------------------|---------------|
| tts  | phones of prompt text + text (prefix)    | prompt.scp         | prompt frames x target phones /    |
|      |                                          |                    | prompt phones (or --duration)      |
| vc   | the source (src.scp)                     | reference (ref.scp)| the source's |
| se   | the noisy speech (noisy.scp)             | none               | the input's |
| tse  | enrollment then mixture (mix.scp)        | enrollment (enroll.scp) | the mixture's |
| l2s  | mouth video (video.scp) or visual features (feats.scp), zero over the prompt | prompt.scp | the video's |

An Omni model (``metis finetune --task omni``) decodes any of tts, vc, se and tse (``mode``) with the
same inputs, and takes the target's words as a prefix beside an audio condition too (``text_guided``:
text-guided TSE, a combination it was never trained on; the enrollment's transcript, prompt_text,
goes before them when the data has it).

Condition audio must already be 16 kHz mono (it is what the model listens to; a wrong rate is refused,
not silently resampled); prompts are voice samples and are converted from any rate or channel count.
"""

from __future__ import annotations

import copy
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metis_cli.checkpoint import load_weights, state_dict_mismatch, weights_name
from metis_cli.config import read_exp_config
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.infer.decode_loop import decode_utterances, output_path
from metis_cli.infer.generate import (
    checkpoints_of,
    generate_audio,
    generate_ssl_tokens,
    load_s2a,
    resolve_codec_input,
    s2a_settings_for,
)
from metis_cli.infer.mask_predict import MaskPredictSettings
from metis_cli.infer.options import DecodeOptions
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.task_registry import TASKS, get_task
from metis_cli.tasks.adaptation import AdaptationConfig, for_inference, merged
from metis_cli.tasks.conditions import FrameConditioner, check_mode

logger = logging.getLogger(__name__)

MIN_PROMPT_SECONDS = 1.0
SILENCE_DBFS = -55.0
SCRIPTS = {
    "en": ("LATIN",),
    "en-us": ("LATIN",),
    "en-gb": ("LATIN",),
    "fr": ("LATIN",),
    "de": ("LATIN",),
    "ko": ("HANGUL",),
    "zh": ("CJK",),
    "ja": ("CJK", "HIRAGANA", "KATAKANA"),
}


@dataclass
class TaskInput:
    """What one output is made from; audio is 16 kHz mono float32."""

    name: str
    condition: np.ndarray | None = None  # VC source, SE noisy speech, TSE mixture
    prompt: np.ndarray | None = None  # TTS prompt, VC reference, TSE enrollment
    text: str | None = None  # TTS; Omni: text-guided VC/SE/TSE
    prompt_text: str | None = None  # TTS: the prompt's transcript (text-guided: optional)
    duration: float | None = None  # TTS: output seconds (default: the prompt's speaking rate)
    visual: np.ndarray | None = None  # L2S: mouth video [frames, H, W] uint8, or features [frames, D], 25 fps
    # TTS with a text.frame_phones model: the target's word timings (start, end seconds), to place the phones by
    # instead of by their mean durations (an oracle, for studying durations; give ``duration`` too)
    word_spans: list[tuple[float, float]] | None = None


def check_script(text: str, language: str, where: str = "") -> None:
    """Refuses letters of a script the phonemizer's language does not read (e.g. Cyrillic for English)."""
    scripts = SCRIPTS.get(language)
    if not scripts:
        return
    foreign = sorted({c for c in text if c.isalpha() and not unicodedata.name(c, "").startswith(scripts)})
    if foreign:
        raise MetisError(
            f"{where}text has characters of a script that language '{language}' does not read: "
            f"{''.join(foreign[:10])!r}"
        )


def check_audio(wav: np.ndarray, what: str, min_seconds: float = 0.0) -> None:
    seconds = len(wav) / FrameConditioner.sample_rate
    if seconds < min_seconds:
        raise MetisError(f"{what} is {seconds:.2f} s long; at least {min_seconds:.0f} s is needed")
    level = 10 * np.log10(float(np.mean(np.square(wav, dtype=np.float64))) + 1e-12)
    if level < SILENCE_DBFS:
        raise MetisError(f"{what} is silent ({level:.0f} dBFS); there is no speech to work with")


def load_input(source, what: str, strict: bool, utt: str | None = None, commands: bool = False) -> np.ndarray:
    """16 kHz mono audio of a file (or, with ``commands``, for a data dir's scp entries: a pipe). ``strict``
    (condition audio): another rate or several channels is an error; otherwise (prompts) the audio is converted."""
    from metis_cli.audio import audio_info, load_audio

    sr = FrameConditioner.sample_rate
    if strict:
        info = audio_info(source, utt, commands)
        if info.sample_rate != sr:
            raise MetisError(
                f"{what} {source}: {info.sample_rate} Hz; this model takes {sr} Hz audio "
                f"(resample it first, e.g. `sox in.wav -r {sr} out.wav`)"
            )
        if info.channels != 1:
            raise MetisError(
                f"{what} {source}: {info.channels} channels; give one channel (e.g. `sox in.wav -c 1 out.wav`)"
            )
    return load_audio(source, sr, utt_id=utt, commands=commands)[0]


def load_task_stage1(exp_dir, config: dict, device: str = "cpu", checkpoint=None) -> Stage1Model:
    """A fine-tuned stage-1 model, LoRA merged into its weights."""
    from metis_cli.tasks.adapter_files import adapter_state_dict, has_adapter

    model = Stage1Model(Stage1Config.from_dict(config["model"]))
    for_inference(model, AdaptationConfig.from_dict(config.get("adaptation", {})))
    if checkpoint is None and not (Path(exp_dir) / "checkpoints").is_dir() and has_adapter(exp_dir):
        # a shared task dir: the pre-trained model + the adapter (metis_cli/tasks/adapter_files.py)
        state, adapter = adapter_state_dict(exp_dir)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise MetisError(f"{exp_dir}/adapter does not fit this model: {state_dict_mismatch(exc)}") from None
        info = {"adapter": str((Path(exp_dir) / "adapter").resolve()), "base": adapter["base"]["checkpoint"]}
        return _placed(model, info, device)
    load_weights(
        exp_dir,
        weights_name(config, "stage1"),
        model,
        checkpoint,
        device,
        what=f"{config['task']} model (`metis finetune`)",
    )
    return _placed(model, model.checkpoint_info, device)


def _placed(model: Stage1Model, info: dict, device: str) -> Stage1Model:
    """LoRA merged into the weights, the checkpoint record kept, on ``device`` for inference."""
    model = merged(model)
    model.checkpoint_info = info
    return model.to(device).eval()


class TaskModel:
    """A fine-tuned stage-1 model with the S2A models and codec that turn its tokens into audio."""

    def __init__(
        self,
        exp_dir,
        s2a_dirs,
        codec_dir,
        task: str | None = None,
        options: DecodeOptions | None = None,
        checkpoint=None,
        shuffle_video: bool = False,
        mode: str | None = None,
    ):
        from metis_cli.codec.inference import load_codec

        options = (options or DecodeOptions()).placed()
        device = options.device
        config = read_exp_config(exp_dir)
        found = config.get("task")
        if not found:
            raise MetisError(
                f"{exp_dir}: not a fine-tuned task model (its config.yaml names no task); make one with `metis "
                "finetune`"
            )
        if task is not None and get_task(task, fine_tuned=True).name != found:
            raise MetisError(f"{exp_dir} holds a {found} model, not {task}; give the experiment dir of a {task} model")
        recorded = config.get("decoder") or {}
        s2a_dirs, codec_dir = s2a_dirs or recorded.get("s2a"), codec_dir or recorded.get("codec")
        if not s2a_dirs or not codec_dir:
            raise MetisError(
                f"{exp_dir} records no S2A model and codec to decode with: give --s2a and --codec (or fine-tune "
                "it with them)"
            )
        # model_task: what the model was trained for; task: what it decodes (an Omni model: the mode)
        self.model_task, self.task = found, check_mode(mode, found)
        self.exp_dir, self.device = Path(exp_dir), device
        self.stage1 = options.prepare(load_task_stage1(exp_dir, config, device, checkpoint))
        self.conditioner = FrameConditioner(config["ssl"])
        self.frame_rate = float(config["ssl"].get("frame_rate") or 50)
        self.max_frames = int(config.get("data", {}).get("max_utterance_frames", 1500))
        # L2S: whether the model reads pre-computed features (feats.scp) instead of video; shuffle_video
        # scrambles the frames in time (the baseline that shows the model reads the lips).
        self.video_features = TASKS[self.task].video and not config["model"].get("visual")
        if shuffle_video and not TASKS[self.task].video:
            raise MetisError(f"shuffling the video applies to lip-to-speech, not {self.task}")
        self.shuffle_video = shuffle_video
        if self.stage1.cfg.n_phones:  # a text prefix: TTS, or an Omni model
            from metis_cli.text.phonemize import PhoneVocab, make_phonemizer

            self.language = config["text"].get("language", "en")
            self.phonemizer = make_phonemizer(config["text"].get("kind", "espeak"), self.language)
            self.vocab = PhoneVocab.load(self.exp_dir / "phones.txt")
        self.durations = None  # text.frame_phones: the phones placed on the frames by their mean durations
        self.phonemized_words: dict[str, list[str]] = {}
        if (config.get("text") or {}).get("frame_phones"):
            from metis_cli.text.frame_phones import DURATIONS_FILE, PhoneDurations

            self.durations = PhoneDurations.load(self.exp_dir / DURATIONS_FILE)
        self.s2a = [options.prepare(m) for m in load_s2a(s2a_dirs, device)]
        self.codec = load_codec(codec_dir, device=device)
        n_codebooks = self.s2a[0].cfg.n_codebooks
        if self.codec.cfg.quantizer.n_codebooks != n_codebooks:
            raise MetisError(
                f"the codec {codec_dir} has {self.codec.cfg.quantizer.n_codebooks} codebooks, the S2A model "
                f"{n_codebooks}"
            )
        # the model's own stage-1 decoding (its config's ``decoding`` section), --stage1-opt over it
        self.stage1_overrides = {**(config.get("decoding") or {}), **(options.stage1 or {})} or None
        self.s2a_overrides = options.s2a
        self.codec_input = resolve_codec_input(self.codec, options.codec_input, self.s2a)
        self.info = {
            "codec_input": self.codec_input,
            "checkpoints": checkpoints_of(stage1=self.stage1, s2a=self.s2a, codec=self.codec),
            "model": str(self.exp_dir.resolve()),
            "model_task": self.model_task,
            "s2a": [str(Path(d).resolve()) for d in s2a_dirs],
            "shuffle_video": shuffle_video,
            "codec": str(Path(codec_dir).resolve()),
            "dtype": options.precision,
        }
        self._resolve_settings()

    def _resolve_settings(self) -> None:
        """The published decoding of the task (stage 1: the registry's; S2A: metis_cli.infer.generate.S2A_DEFAULTS)
        with the overrides over it (stage 1: the model config's ``decoding``, then the caller's)."""
        settings = {**TASKS[self.task].stage1_defaults, **(self.stage1_overrides or {})}
        self.stage1_settings = MaskPredictSettings.checked(settings, "stage-1 decode settings")
        self.s2a_settings = s2a_settings_for(self.s2a, self.s2a_overrides)
        self.info = {
            **self.info,
            "stage1_settings": vars(self.stage1_settings),
            "s2a_settings": [vars(s) for s in self.s2a_settings],
        }

    def variant(self, mode: str | None = None, stage1: dict | None = None, s2a: dict | None = None) -> TaskModel:
        """This model, sharing its weights, decoding ``mode`` (an Omni model; default: the current one) with
        ``stage1`` / ``s2a`` settings over the ones it has."""
        if (mode is None or mode == self.task) and not stage1 and not s2a:
            return self
        other = copy.copy(self)
        other.task = check_mode(mode or self.task, self.model_task)
        other.stage1_overrides = {**(self.stage1_overrides or {}), **(stage1 or {})}
        other.s2a_overrides = {**(self.s2a_overrides or {}), **(s2a or {})}
        other._resolve_settings()
        return other

    @property
    def sample_rate(self) -> int:
        return self.codec.cfg.sample_rate

    def _phones(self, text: str | None, what: str, name: str) -> list[int]:
        from metis_cli.text.phonemize import text_to_phones

        if text is None or not text.strip():
            raise MetisError(f"'{name}': {what} is empty; TTS needs words")
        check_script(text, self.language, f"'{name}': {what}: ")
        return self.vocab.encode(text_to_phones(text, self.phonemizer, name), name)

    def prepare(self, item: TaskInput) -> dict:
        """Checks one input and computes what the models need from it; errors name the input."""
        where = f"'{item.name}': "
        task, spec = self.task, TASKS[self.task]
        prompt_tokens = torch.zeros(0, dtype=torch.long)
        prompt_codes = torch.zeros(0, self.s2a[0].cfg.n_codebooks, dtype=torch.long)
        prompt_feats = np.zeros((0, self.conditioner.dim), dtype=np.float32)
        if spec.prompt_scp:
            if item.prompt is None:
                raise MetisError(f"{where}the {task} task needs a {spec.prompt_name} recording of the target voice")
            check_audio(item.prompt, f"{where}the {spec.prompt_name}", MIN_PROMPT_SECONDS)
            prompt_feats = self.conditioner(item.prompt)
            prompt_tokens = torch.from_numpy(self.conditioner.tokens(prompt_feats, item.name).astype(np.int64))
            with torch.no_grad():
                wav = torch.from_numpy(_resample(item.prompt, self.sample_rate))[None].to(self.device)
                prompt_codes = self.codec.encode(wav)[0].long().cpu()
            n = min(len(prompt_tokens), len(prompt_codes))
            prompt_tokens, prompt_codes, prompt_feats = prompt_tokens[:n], prompt_codes[:n], prompt_feats[:n]
        prepared = {"name": item.name, "prompt_tokens": prompt_tokens, "prompt_codes": prompt_codes}
        if spec.text:
            prompt_phones = self._phones(item.prompt_text, "the prompt's transcript", item.name)
            phones = self._phones(item.text, "the text", item.name)
            if item.duration is not None:
                if item.duration <= 0:
                    raise MetisError(f"{where}duration must be positive, got {item.duration}")
                frames = int(round(item.duration * self.frame_rate))
            else:  # the prompt's speaking rate (the published duration predictor was never released)
                frames = int(round(len(prompt_tokens) * len(phones) / len(prompt_phones)))
            prepared.update(phones=torch.tensor(prompt_phones + phones), frames=max(1, frames))
            if self.durations is not None:
                prepared["condition"] = self._placed_phones(item, len(prompt_tokens), prepared["frames"])
            elif item.word_spans is not None:
                raise MetisError(f"{where}word timings place the phones of a model fine-tuned with text.frame_phones")
        elif spec.video:
            prepared.update(self._visual_condition(item, len(prompt_tokens)))
        else:
            if item.condition is None:
                raise MetisError(f"{where}the {task} task needs the {spec.condition_name}")
            check_audio(item.condition, f"{where}the {spec.condition_name}")
            feats = self.conditioner(item.condition)
            prepared.update(frames=len(feats), condition=torch.from_numpy(np.concatenate([prompt_feats, feats])))
            if item.text is not None:  # text-guided: the target's words as the prefix too
                if not self.stage1.cfg.n_phones:
                    raise MetisError(
                        f"{where}this {self.model_task} model has no text prefix; text-guided {task} needs an omni "
                        "model"
                    )
                prompt_phones = (
                    self._phones(item.prompt_text, "the prompt's transcript", item.name) if item.prompt_text else []
                )
                prepared["phones"] = torch.tensor(prompt_phones + self._phones(item.text, "the text", item.name))
        total = len(prompt_tokens) + prepared["frames"]
        if total > self.max_frames:
            raise MetisError(
                f"{where}{len(prompt_tokens) / self.frame_rate:.1f} s of prompt + "
                f"{prepared['frames'] / self.frame_rate:.1f} s "
                f"of output is longer than the model's limit of {self.max_frames / self.frame_rate:.1f} s "
                f"(data.max_utterance_frames); use a shorter {spec.prompt_name or 'input'} or split the input"
            )
        return prepared

    def _placed_phones(self, item: TaskInput, prompt_frames: int, frames: int) -> torch.Tensor:
        """text.frame_phones: nothing over the prompt, then one-hot phones placed by their mean durations."""
        from metis_cli.text.frame_phones import NONE, one_hot_condition, phones_by_word, place_by_words

        words = phones_by_word(item.text, self.phonemizer, self.phonemized_words)
        groups = [self.vocab.encode(word, item.name) for word in words]
        if item.word_spans is not None:
            placed = place_by_words(groups, item.word_spans, frames, self.frame_rate)
        else:
            placed = self.durations.place(groups, frames)
        ids = torch.from_numpy(np.concatenate([np.full(prompt_frames, NONE), placed]))
        return one_hot_condition(ids, self.stage1.cfg.frame_condition_dim)

    @torch.no_grad()
    def _visual_condition(self, item: TaskInput, prompt_frames: int) -> dict:
        """L2S: frames = 2 per video frame; condition = zeros over the prompt, then the visual features."""
        video = item.visual
        if video is None or len(video) < 2:
            raise MetisError(f"'{item.name}': the l2s task needs a video of at least 2 frames")
        if self.video_features != (video.ndim == 2):
            wanted = (
                "pre-computed visual features [frames, dim] (.npy)"
                if self.video_features
                else "mouth video (mp4, avi, mkv)"
            )
            raise MetisError(f"'{item.name}': this l2s model takes {wanted}")
        if self.shuffle_video:
            video = video[np.random.default_rng(0).permutation(len(video))]
        frames = 2 * len(video)
        batch = torch.from_numpy(np.ascontiguousarray(video))[None].to(self.device)
        valid = torch.ones(1, len(video), dtype=torch.bool, device=self.device)
        feats = self.stage1.visual_condition(batch, valid, torch.zeros(1, dtype=torch.long), frames)[0].float().cpu()
        return {"frames": frames, "condition": torch.cat([torch.zeros(prompt_frames, feats.shape[1]), feats])}

    @torch.no_grad()
    def generate(self, prepared: list[dict], generator: torch.Generator | None = None) -> list[np.ndarray]:
        """Waveforms at ``sample_rate`` for a batch of prepared inputs."""
        prompts = [p["prompt_tokens"] for p in prepared]
        ssl = generate_ssl_tokens(
            self.stage1,
            prompts,
            [p["frames"] for p in prepared],
            self.stage1_settings,
            generator,
            phones=[p["phones"] for p in prepared] if "phones" in prepared[0] else None,
            frame_conditions=[p["condition"] for p in prepared] if "condition" in prepared[0] else None,
        )
        return generate_audio(
            self.s2a,
            self.codec,
            ssl,
            prompts,
            [p["prompt_codes"] for p in prepared],
            self.s2a_settings,
            generator,
            codec_input=self.codec_input,
        )


def _resample(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    from metis_cli.audio import resample

    sr = FrameConditioner.sample_rate
    return wav if sample_rate == sr else resample(wav, sr, sample_rate).astype(np.float32)


def datadir_inputs(
    data_dir, task: str, video_features: bool = False, text_guided: bool = False, word_timings: bool = False
) -> tuple[list[str], callable]:
    """The utterance ids of a data dir that has the task's inputs, and a loader of one TaskInput
    (``video_features``: an L2S model that reads feats.scp instead of video.scp; ``text_guided``: the
    transcript too, for an Omni model's text-guided VC/SE/TSE; ``word_timings``: TTS, each output as long as the
    recording (utt2dur) with the phones placed by words.ctm)."""
    data, spec = DataDir(data_dir), TASKS[task]
    condition_scp = "feats.scp" if spec.video and video_features else spec.condition_scp
    with_text = spec.text or text_guided
    needed = [s for s in (condition_scp, spec.prompt_scp) if s] + (["text"] if with_text else [])
    if word_timings:
        if not spec.text:
            raise MetisError(f"word timings place the phones of TTS, not of {task}")
        needed += ["words.ctm", "utt2dur"]
    for name in needed:
        if not data.has(name):
            raise MetisError(f"{data.file(name)}: not found; decoding {task} needs {', '.join(needed)}")
    utts = data.utt_ids() if data.has("utt2spk") else sorted(data.read(needed[0]))
    tables = {name: data.read(name) for name in needed if not name.endswith(".ctm")}
    if word_timings:
        from metis_cli.data.datadir import read_ctm

        spans = {u: [(w.start, w.end) for w in words] for u, words in read_ctm(data.file("words.ctm")).items()}
    prompt_text = data.read("prompt_text") if data.has("prompt_text") else {}
    if spec.text and not prompt_text and data.has("utt2prompt"):
        texts, utt2prompt = tables["text"], data.read("utt2prompt")
        prompt_text = {u: texts[p] for u, p in utt2prompt.items() if p in texts}

    def load(utt: str) -> TaskInput:
        item = TaskInput(utt)
        if condition_scp:
            if utt not in tables[condition_scp]:
                raise MetisError(f"{data.file(condition_scp)}: no entry for '{utt}'")
            if spec.video:
                from metis_cli.video import read_visual_input

                item.visual = read_visual_input(tables[condition_scp][utt], video_features, utt)
            else:
                item.condition = load_input(
                    tables[condition_scp][utt], f"'{utt}': {spec.condition_name}", strict=True, utt=utt, commands=True
                )
        if spec.prompt_scp:
            scp = spec.prompt_scp
            if utt not in tables[scp]:
                raise MetisError(f"{data.file(scp)}: no entry for '{utt}'")
            item.prompt = load_input(
                tables[scp][utt], f"'{utt}': {spec.prompt_name}", strict=False, utt=utt, commands=True
            )
        if with_text:
            item.text = tables["text"].get(utt)
            if item.text is None:
                raise MetisError(f"{data.file('text')}: no entry for '{utt}'")
            item.prompt_text = prompt_text.get(utt)
            if item.prompt_text is None and spec.text:
                raise MetisError(f"'{utt}': no transcript of its prompt (a prompt_text table, or utt2prompt + text)")
        if word_timings:
            if utt not in spans or utt not in tables["utt2dur"]:
                raise MetisError(f"'{utt}': no word timings (words.ctm) or duration (utt2dur)")
            item.word_spans, item.duration = spans[utt], float(tables["utt2dur"][utt])
        return item

    return utts, load


def decode_task(
    exp_dir,
    data_dir,
    out_dir,
    s2a_dirs,
    codec_dir,
    task: str | None = None,
    options: DecodeOptions | None = None,
    shuffle_video: bool = False,
    mode: str | None = None,
    text_guided: bool = False,
    num_jobs: int = 1,
    word_timings: bool = False,
) -> dict:
    """Decodes every utterance of ``data_dir`` into the decode dir ``out_dir`` (wav/<utt>.wav, wav.scp,
    decode.json with the settings and the real-time factor). A rerun skips what is written; an
    utterance whose inputs are bad is logged (``failed``) and skipped. Every output carries the
    watermark (metis_cli/watermark.py) unless ``options.watermark`` is False. ``mode``: the task an Omni model
    decodes; ``text_guided``: with the data's transcripts as the prefix too (Omni, vc/se/tse); ``word_timings``
    (TTS with a text.frame_phones model): the phones placed by the data's words.ctm, each output as long as its
    recording, an oracle for studying durations.

    ``num_jobs`` > 1 splits the utterances (sorted by length, dealt out in turn) over that many processes, one
    GPU each when the device is a GPU and there are several, the CPU's threads shared out otherwise; their
    outputs are merged into one decode dir. Each job seeds its own generator (``seed + job``), so the samples
    drawn differ from a one-job run's; decode.json records ``num_jobs``."""
    from metis_cli.data.decode_dir import write_decode_dir

    options = (options or DecodeOptions()).placed()
    args = (exp_dir, data_dir, out_dir, s2a_dirs, codec_dir, task, options)
    args += (shuffle_video, mode, text_guided, word_timings)
    if num_jobs < 1:
        raise MetisError(f"num_jobs must be 1 or more, got {num_jobs}")
    if num_jobs == 1:
        parts = [_decode_part(*args, job=0, num_jobs=1)]
    else:
        parts = _decode_in_jobs(args, num_jobs, options)
    out, first = Path(out_dir), parts[0]
    done = {u: str(output_path(out, u).resolve()) for u in first["utts"] if output_path(out, u).is_file()}
    failed = sum(p["failed"] for p in parts)
    if not done:
        raise MetisError(f"{out}: no utterance was decoded ({failed} failed); see {out / 'failed'}")
    seconds_audio = sum(p["seconds_audio"] for p in parts)
    seconds = max(p["seconds"] for p in parts)  # wall clock: the jobs ran side by side
    rtf = sum(p["seconds"] for p in parts) / seconds_audio if seconds_audio else None
    write_decode_dir(
        out,
        first["task"],
        data_dir,
        done,
        sample_rate=first["sample_rate"],
        **first["info"],
        text_guided=text_guided,
        **({"word_timings": True} if word_timings else {}),
        seed=options.seed,
        num_jobs=num_jobs,
        seconds=round(seconds, 2),
        real_time_factor=rtf,
        failed=failed,
        watermark=first["watermark"],
    )
    return {
        "utterances": len(done),
        "decoded": sum(p["decoded"] for p in parts),
        "failed": failed,
        "seconds": seconds,
        "real_time_factor": rtf,
        "out": str(out),
    }


def _decode_in_jobs(args: tuple, num_jobs: int, options: DecodeOptions) -> list[dict]:
    """``_decode_part`` in ``num_jobs`` spawned processes: job i on GPU i mod (GPUs visible) when decoding on
    a GPU, else on the CPU with its threads shared out."""
    import multiprocessing
    import os
    from dataclasses import replace

    gpus = torch.cuda.device_count() if options.device.startswith("cuda") else 0
    threads = None if gpus else max(1, (os.cpu_count() or 1) // num_jobs)  # CPU jobs share the cores
    jobs = []
    for job in range(num_jobs):
        device = f"cuda:{job % gpus}" if gpus > 1 else options.device
        jobs.append((*args[:6], replace(options, device=device), *args[7:], job, num_jobs, threads))
    with multiprocessing.get_context("spawn").Pool(num_jobs) as pool:
        return pool.starmap(_decode_job, jobs)


def _decode_job(*args) -> dict:
    """One spawned job: its share of the CPU's threads, its logging, then ``_decode_part``."""
    from metis_cli.log import setup_logging

    *part, job, num_jobs, threads = args
    if threads is not None:
        torch.set_num_threads(threads)
    setup_logging()
    return _decode_part(*part, job=job, num_jobs=num_jobs)


def _decode_part(
    exp_dir,
    data_dir,
    out_dir,
    s2a_dirs,
    codec_dir,
    task,
    options: DecodeOptions,
    shuffle_video: bool,
    mode,
    text_guided: bool,
    word_timings: bool,
    job: int,
    num_jobs: int,
) -> dict:
    """Decodes job ``job``'s share of the utterances (every ``num_jobs``-th by length) and returns what
    decode.json needs from it."""
    from metis_cli.watermark import marker_for

    model = TaskModel(exp_dir, s2a_dirs, codec_dir, task, options, shuffle_video=shuffle_video, mode=mode)
    marker = marker_for(Path(exp_dir).name, options.watermark, options.watermark_key)
    task = model.task
    if text_guided and (TASKS[task].text or TASKS[task].video or not model.stage1.cfg.n_phones):
        raise MetisError(
            f"text-guided decoding needs an omni model and a vc, se or tse mode (here: a {model.model_task} model, "
            f"{task})"
        )
    data_dir, out = Path(data_dir), Path(out_dir)
    if word_timings and model.durations is None:
        raise MetisError(f"{exp_dir}: word timings place the phones of a model fine-tuned with text.frame_phones")
    utts, load = datadir_inputs(data_dir, task, model.video_features, text_guided, word_timings)
    data = DataDir(data_dir)
    durations = data.read("utt2dur") if data.has("utt2dur") else {}
    share = sorted(utts, key=lambda u: (float(durations.get(u, 0)), u))[job::num_jobs]
    generator = torch.Generator(device=model.device).manual_seed(options.seed + job)

    def decode_batch(batch: list[str]) -> tuple[dict, dict]:
        prepared, failed = [], {}
        for utt in batch:
            try:
                prepared.append(model.prepare(load(utt)))
            except MetisError as exc:
                failed[utt] = str(exc)
                logger.warning("%s", exc)
        try:
            wavs = model.generate(prepared, generator) if prepared else []
        except MetisError as exc:
            logger.warning("batch starting with %s failed: %s", prepared[0]["name"], exc)
            return {}, {**failed, **{p["name"]: str(exc) for p in prepared}}
        marked = [marker(wav, model.sample_rate) if marker else wav for wav in wavs]
        return {p["name"]: wav for p, wav in zip(prepared, marked, strict=True)}, failed

    label = f"decode {task} {data_dir.name}" + (f" (job {job + 1}/{num_jobs})" if num_jobs > 1 else "")
    try:
        run = decode_utterances(
            out,
            share,
            decode_batch,
            model.sample_rate,
            options.batch_size,
            order=lambda u: float(durations.get(u, 0)),
            label=label,
        )
        decoded, failed, seconds, seconds_audio = run.decoded, len(run.failed), run.seconds, run.seconds_audio
    except MetisError:
        if num_jobs == 1:
            raise
        decoded, failed, seconds, seconds_audio = 0, len(share), 0.0, 0.0  # the merge says if anything was decoded
    return {
        "task": task,
        "utts": utts,
        "sample_rate": model.sample_rate,
        "info": model.info,
        "watermark": marker.info if marker else None,
        "decoded": decoded,
        "failed": failed,
        "seconds": seconds,
        "seconds_audio": seconds_audio,
    }
