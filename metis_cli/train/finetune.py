"""``metis finetune --task {tts,vc,se,tse,l2s,omni}``: a pre-trained stage-1 model learns to follow a condition.

Config: egs/<task>/conf/{mini,full}/finetune.yaml. Sections of metis_cli.train.token_learner plus ``task``,
``init`` (``exp_dir`` of the pre-trained model, optional ``checkpoint``), ``adaptation``
(metis_cli.tasks.adaptation), ``augment`` (metis_cli.tasks.augment), ``text`` (TTS front end: ``kind``
espeak|arpabet, ``language``; ``ctc_weight``: > 0 adds the auxiliary phone CTC loss of
metis_cli.models.stage1, with this weight, on the batches that see their text; 0, the default, as published;
``frame_phones``: also the phones placed on the frames, through the frame adapter, in training by the corpus's
word timings (``words``) or by mean phone durations as at decoding (``durations``), metis_cli.text.frame_phones;
false, the default, as published), ``decoding`` (stage-1 decoding settings of this model over the task's published
ones, e.g. ``{cfg_scale: 0.0}``: every decode of the model starts from them, ``--stage1-opt`` over them) and
``ssl`` (the SSL front end and k-means model, read from the tokens'
tokens.json and copied into the experiment dir, see metis_cli.tasks.conditions).
The model section is the pre-trained model's, with the task's condition hook added.

Omni (``task: omni``) trains one model on several tasks: section ``mixture`` names them (of tts, vc, se,
tse) with a sampling ``weight`` and a ``prompt_prob`` each (the masking section's otherwise); every batch
is one task, drawn with the step's seed; the model has both the text prefix and the frame adapter, and its
validation reports each task's cross-entropy (``ce_bits_<task>``) and their mean.

Training pairs per task, drawn for every batch (see metis_cli.tasks.augment):
- TTS: the utterance's SSL tokens, its phones as the prefix. Without a prompt (the CFG dropout) the
  text is dropped too, so that the model also learns the unconditional case.
- SE: condition = features of the noisy, reverberant version of the utterance; no prompt.
- TSE, VC: condition = features of the mixture / the timbre-perturbed utterance; over the prompt
  prefix the condition is the clean speech (as enrollment or reference audio is at inference).
- L2S: condition = the utterance's mouth video (video.scp) through the visual front end, trained with
  the adapter (or pre-computed visual features, feats.scp, when ``model.visual`` is null); zero over the
  prompt, as the reference does. Its validation also reports the cross-entropy with each clip's frames
  shuffled in time (``ce_bits_shuffled_video``): the gap to ``ce_bits`` is what the model reads off the lips.
- TTS validation likewise reports the cross-entropy with each utterance given another one's phones
  (``ce_bits_shuffled_text``): the gap to ``ce_bits`` is what the model reads from the text.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from metis_cli.checkpoint import load_weights, weights_name
from metis_cli.config import check_keys, read_exp_config
from metis_cli.data.batching import UtteranceArrays
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.infer.mask_predict import MaskPredictSettings
from metis_cli.models.masking import MaskingConfig, sample_masks
from metis_cli.models.stage1 import Stage1Config, Stage1Model
from metis_cli.task_registry import TASKS, get_task
from metis_cli.tasks.adaptation import CONDITION_MODULES, AdaptationConfig, adapt
from metis_cli.tasks.augment import (
    BABBLE_TALKERS,
    AugmentConfig,
    add_noise_and_reverb,
    mix_interferer,
    perturb_timbre,
)
from metis_cli.tasks.conditions import FrameConditioner, ssl_front_end
from metis_cli.train.pretrain import resolve_vocab
from metis_cli.train.token_learner import DataConfig, TokenLearner, masked_cross_entropy
from metis_cli.train.trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)
PHONES_FILE = "phones.txt"


@dataclass
class FinetuneDataConfig(DataConfig):
    cache_audio: bool = True  # keep the decoded audio (and video) of the training utterances in memory


def check_decoding(task: str, decoding) -> None:
    """The config's ``decoding`` section (stage-1 settings over the task's published ones), refused before
    training when a key or a value is one decoding would refuse."""
    if decoding is None:
        return
    if not isinstance(decoding, dict):
        raise MetisError(f"decoding: give stage-1 settings as a mapping, e.g. {{cfg_scale: 0.0}}, not {decoding!r}")
    MaskPredictSettings.checked({**TASKS[task].stage1_defaults, **decoding}, "decoding")


class FinetuneLearner(TokenLearner):
    kinds = ("ssl_tokens",)
    extra_sections = ("task", "init", "adaptation", "augment", "text", "ssl", "mixture", "decoder", "decoding")
    data_config = FinetuneDataConfig
    name = "stage1"
    streams = False
    no_streams_reason = "fine-tuning makes its inputs from the audio of data dirs"
    ctc_weight = 0.0  # text.ctc_weight (tasks with text): the auxiliary phone CTC loss's weight
    frame_phones = False  # text.frame_phones (TTS): false, or how training places the phones: words | durations

    @classmethod
    def resolve(cls, config: dict) -> dict:
        out = super().resolve(config)
        out["augment"] = asdict(AugmentConfig.from_dict(config.get("augment") or {}))
        out["adaptation"] = asdict(AdaptationConfig.from_dict(config.get("adaptation") or {}))
        return out

    def __init__(self, trainer: Trainer, config: dict, train_dirs, val_dirs=()):
        self.task = get_task(config.get("task"), fine_tuned=True).name
        self.reads_shards(train_dirs)  # refused here, before the SSL front end is read from the first dir
        self._mixture(config)
        self.exp_dir = trainer.exp_dir
        self.augment = AugmentConfig.from_dict(config.get("augment") or {})
        self.utt2spk: dict[str, str] = {}
        self.audio: dict[str, np.ndarray] = {}
        self.cache_audio = bool((config.get("data") or {}).get("cache_audio", True))
        check_decoding(self.task, config.get("decoding"))
        if (config.get("text") or {}).get("frame_phones") and self.task != "tts":
            raise MetisError(f"text.frame_phones is a TTS option, not one for {self.task}")
        if self.needs_text:
            from metis_cli.text.phonemize import make_phonemizer

            text = config.setdefault("text", {})
            self.phonemizer = make_phonemizer(text.setdefault("kind", "espeak"), text.setdefault("language", "en"))
            self.ctc_weight = float(text.setdefault("ctc_weight", 0.0))
            if self.ctc_weight < 0:
                raise MetisError(f"text.ctc_weight must be 0 (off) or positive, got {self.ctc_weight}")
            self.phones: dict[str, list[str]] = {}
            self.phone_ids: dict[str, list[int]] = {}
            # text.frame_phones: the phones placed on the frames too (metis_cli.text.frame_phones; TTS only)
            self.frame_phones = text.setdefault("frame_phones", False) or False
            if self.frame_phones not in (False, "words", "durations"):
                raise MetisError(f"text.frame_phones is false, words or durations, not {self.frame_phones!r}")
            self.word_spans: dict[str, list[tuple[float, float]]] = {}  # utterance -> its words' (start, end)
            self.word_phones: dict[str, list[list[str]]] = {}  # utterance -> each word's phones
            self.word_ids: dict[str, list[list[int]]] = {}  # the same as phone ids
            self.phonemized_words: dict[str, list[str]] = {}  # word -> its phones, phonemised once
            self.placed: dict[str, np.ndarray] = {}  # utterance -> its frames' phone ids
            self.durations = None  # PhoneDurations of the training utterances
            self.place_by_durations = False  # validation: place the phones as decoding does
        front_end = config.get("ssl") or ssl_front_end(train_dirs[0])
        self.conditioner = FrameConditioner.for_experiment(front_end, trainer.exp_dir)
        config["ssl"] = self.conditioner.front_end
        self.sources: dict[str, tuple] = {}  # utterance -> (audio source, start, end), read once per data dir
        self.utt_lists: dict[int, list[str]] = {}  # id(data) -> its utterances, to draw other speakers from
        self.videos: dict[str, str] = {}  # L2S: utterance -> video (or feature) file
        self.token_frames: dict[str, int] = {}  # L2S: utterance -> its SSL tokens (what its video must cover)
        self.video_cache: dict[str, np.ndarray] = {}
        self.shuffle_video = False  # L2S validation: scramble each clip's frames in time (seeded)
        self.shuffle_text = False  # TTS validation: each utterance gets the next validation utterance's phones
        self.use_features = TASKS[self.task].video and not (config.get("model") or {}).get("visual")
        super().__init__(trainer, config, train_dirs, val_dirs)

    def _mixture(self, config: dict) -> None:
        """The tasks trained (``modes``: the task itself, or an Omni model's mixture), their sampling
        weights and their masking."""
        masking = config.get("masking", {})
        mixture = config.get("mixture") or {}
        if not TASKS[self.task].modes:
            if mixture:
                raise MetisError(f"section mixture is for task omni, not {self.task}")
            mixture = {self.task: {}}
        else:
            unknown = sorted(set(mixture) - set(TASKS[self.task].modes))
            if not mixture or unknown:
                raise MetisError(
                    f"task omni: section mixture must name tasks of {', '.join(TASKS[self.task].modes)}"
                    + (f", not {', '.join(unknown)}" if unknown else "")
                )
        self.modes = [m for m in TASKS if m in mixture]
        self.mode_masking, weights = {}, []
        for mode in self.modes:
            entry = mixture[mode] or {}
            check_keys(entry, ("weight", "prompt_prob"), f"mixture.{mode}")
            self.mode_masking[mode] = MaskingConfig.from_dict(
                {**masking, **{k: v for k, v in entry.items() if k == "prompt_prob"}}
            )
            weights.append(float(entry.get("weight", 1.0)))
        if any(w < 0 for w in weights) or not sum(weights):
            raise MetisError(
                f"mixture weights must be non-negative and not all 0, got {dict(zip(self.modes, weights, strict=True))}"
            )
        self.mode_weights = torch.tensor(weights)
        self.needs_text = any(TASKS[m].text for m in self.modes)
        self.forced_mode: str | None = None  # validation of one task of the mixture

    def _draw_mode(self, generator: torch.Generator) -> str:
        if self.forced_mode:
            return self.forced_mode
        if len(self.modes) == 1:  # a single task draws nothing: its random stream stays as it was
            return self.modes[0]
        return self.modes[int(torch.multinomial(self.mode_weights, 1, generator=generator))]

    # --- data -----------------------------------------------------------------------------------
    def select(self, data: UtteranceArrays, validation: bool) -> UtteranceArrays:
        from metis_cli.text.frame_phones import phones_by_word
        from metis_cli.text.phonemize import text_to_phones

        for d in data.data_dirs:
            self.utt2spk.update(DataDir(d).utt2spk)
        if TASKS[self.task].video:
            return self._select_videos(data)
        if any(not TASKS[mode].text for mode in self.modes):
            for d in data.data_dirs:
                if not DataDir(d).has("wav.scp"):
                    raise MetisError(f"{d}: no wav.scp; fine-tuning for {self.task} makes its inputs from the audio")
                self.sources.update(DataDir(d).audio_sources())
        if not self.needs_text:
            return data
        # text and tokens must stay whole: no random crops
        max_frames = int(self.config.get("data", {}).get("max_utterance_frames", 1500))
        texts = {}
        for d in data.data_dirs:
            dd = DataDir(d)
            if not dd.has("text"):
                raise MetisError(f"{d}: no text file; TTS fine-tuning needs transcripts")
            texts.update(dd.read("text"))
            if self.frame_phones:
                self.word_spans.update(self._word_spans(dd))
        dropped: dict[str, str] = {}
        for utt in list(data.lengths):
            if data.lengths[utt] > max_frames:
                dropped[utt] = f"{data.lengths[utt]} frames > data.max_utterance_frames"
            elif utt not in texts:
                dropped[utt] = "no text"
            else:
                try:
                    self.phones[utt] = text_to_phones(texts[utt], self.phonemizer, utt)
                    if self.frame_phones:
                        self.word_phones[utt] = phones_by_word(texts[utt], self.phonemizer, self.phonemized_words)
                except MetisError as exc:
                    dropped[utt] = str(exc)
            if utt in dropped and not (validation and TASKS[self.task].modes):  # Omni validates its other tasks on them
                del data.lengths[utt]
        if dropped:
            logger.warning(
                "%d utterance(s) left out of TTS fine-tuning, e.g. %s",
                len(dropped),
                "; ".join(f"{u}: {r}" for u, r in list(dropped.items())[:3]),
            )
        if not data.lengths:
            raise MetisError(f"no usable utterances for TTS in {', '.join(map(str, data.data_dirs))}")
        return data

    @staticmethod
    def _word_spans(dd: DataDir) -> dict[str, list[tuple[float, float]]]:
        from metis_cli.data.datadir import read_ctm

        if not dd.has("words.ctm"):
            raise MetisError(
                f"{dd.path}: no words.ctm; text.frame_phones places the phones by word timings (the embedded corpus "
                "has them; or set text.frame_phones=false)"
            )
        return {u: [(w.start, w.end) for w in words] for u, words in read_ctm(dd.file("words.ctm")).items()}

    def _place_phones(self, vocab) -> None:
        """Places every utterance's phones on its frames by its word timings, and fits the mean durations on
        the training utterances (saved in the experiment dir for decoding); with ``frame_phones: durations`` the
        placement is then redone by those durations, as decoding places them."""
        from metis_cli.text.frame_phones import DURATIONS_FILE, PhoneDurations, place_by_words

        frame_rate = float(self.conditioner.front_end.get("frame_rate") or 50)
        fitted = []
        for data in (self.train_data, self.val_data):
            for utt, n_frames in list(data.lengths.items() if data else []):
                if utt not in self.phone_ids:
                    continue
                try:
                    groups = [vocab.encode(word, utt) for word in self.word_phones[utt]]
                except MetisError as exc:  # a validation word phonemised on its own: a symbol never trained
                    if data is self.train_data:
                        raise
                    logger.warning("validation: %s; left out", exc)
                    del data.lengths[utt]
                    continue
                self.word_ids[utt] = groups
                self.placed[utt] = place_by_words(groups, self.word_spans.get(utt, []), n_frames, frame_rate)
                if data is self.train_data:
                    fitted.append((self.placed[utt], len(groups)))
        self.durations = PhoneDurations.fit(fitted)
        self.durations.save(self.exp_dir / DURATIONS_FILE)
        if self.frame_phones == "durations":  # training sees the placement decoding gives, fitted above
            self.placed = {u: self.durations.place(self.word_ids[u], len(ids)) for u, ids in self.placed.items()}

    def _frame_phones(self, utt: str, n_frames: int) -> np.ndarray:
        """The frame ids a batch row gets: its own placed phones, or (validation variants) another utterance's
        text or its own text placed by the mean durations, as decoding places them."""
        if not (self.shuffle_text or self.place_by_durations):
            return self.placed[utt]
        other = self._other_text(utt) if self.shuffle_text else utt
        return self.durations.place(self.word_ids[other], n_frames)

    def _select_videos(self, data: UtteranceArrays) -> UtteranceArrays:
        scp = "feats.scp" if self.use_features else "video.scp"
        for d in data.data_dirs:
            dd = DataDir(d)
            if not dd.has(scp):
                raise MetisError(
                    f"{d}: no {scp}; lip-to-speech fine-tuning needs "
                    f"{'pre-computed visual features (model.visual is null)' if self.use_features else 'mouth videos'}"
                )
            self.videos.update(dd.read(scp))
        missing = [u for u in data.lengths if u not in self.videos]
        for utt in missing:
            del data.lengths[utt]
        if missing:
            logger.warning("%d utterance(s) without an entry in %s left out, e.g. %s", len(missing), scp, missing[0])
        if not data.lengths:
            raise MetisError(f"no utterance of {', '.join(map(str, data.data_dirs))} has an entry in {scp}")
        self.token_frames.update(data.lengths)
        return data

    def _video(self, utt: str) -> np.ndarray:
        """The utterance's video frames [T_v, S, S] uint8 (resized once to the front end's input size)
        or its pre-computed features [T_v, D]; cached."""
        from metis_cli.ssl.extractors import HOP, SAMPLE_RATE
        from metis_cli.video import check_alignment, read_visual_input

        video = self.video_cache.get(utt)
        if video is None:
            video = read_visual_input(self.videos[utt], self.use_features, utt)
            seconds = self.token_frames[utt] * HOP / SAMPLE_RATE
            check_alignment(len(video), seconds, f"{self.videos[utt]} (utterance '{utt}')")
            if not self.use_features:
                size = int(self.config["model"]["visual"].get("input_size", 88))
                frames = torch.from_numpy(video).float()[:, None]
                if frames.shape[-1] != size or frames.shape[-2] != size:
                    frames = torch.nn.functional.interpolate(frames, size=(size, size), mode="area")
                video = frames[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
            if self.cache_audio:
                self.video_cache[utt] = video
        return video

    def _video_batch(self, batch: dict, pieces) -> dict:
        """The video frames under each piece (25 fps: token frame f is video frame f // 2), padded."""
        clips, offsets = [], []
        for p in pieces:
            video = self._video(p.utt)
            first = min(p.start // 2, len(video) - 1)
            clip = video[first : (p.start + p.frames + 1) // 2 + 1]
            if self.shuffle_video:
                clip = clip[np.random.default_rng(0).permutation(len(clip))]
            clips.append(clip)
            offsets.append(p.start - 2 * first)
        longest = max(len(c) for c in clips)
        padded = np.zeros((len(clips), longest, *clips[0].shape[1:]), dtype=clips[0].dtype)
        valid = torch.zeros(len(clips), longest, dtype=torch.bool)
        for i, clip in enumerate(clips):
            padded[i, : len(clip)] = clip
            valid[i, : len(clip)] = True
        batch.update(video=torch.from_numpy(padded), video_valid=valid, video_offset=torch.tensor(offsets))
        return batch

    def _phone_vocab(self, train_utts):
        from metis_cli.text.phonemize import PhoneVocab

        path = self.exp_dir / PHONES_FILE
        if path.is_file():  # resuming: the ids must not move
            return PhoneVocab.load(path)
        # with frame_phones, the symbols of the words phonemised one by one as well
        vocab = PhoneVocab.build(self.phones[u] + sum(self.word_phones.get(u, []), []) for u in train_utts)
        tmp = path.with_name(f".{PHONES_FILE}.{id(self)}.tmp")
        vocab.save(tmp)
        tmp.replace(path)
        return vocab

    def _load(self, utt: str) -> np.ndarray:
        from metis_cli.audio import load_audio

        wav = self.audio.get(utt)
        if wav is None:
            source, start, end = self.sources[utt]
            wav, _ = load_audio(source, FrameConditioner.sample_rate, start=start, end=end, utt_id=utt, commands=True)
            if self.cache_audio:
                self.audio[utt] = wav
        return wav

    def _others(self, data: UtteranceArrays, utt: str, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        """Audio of up to ``count`` other utterances of other speakers (of any other utterance when the
        data has one speaker), drawn by rejection so that the cost does not grow with the data."""
        utts = self.utt_lists.setdefault(id(data), sorted(data.lengths))
        speaker = self.utt2spk.get(utt)
        picks: list[str] = []
        for _ in range(50 * count):
            other = utts[rng.integers(len(utts))]
            if other != utt and other not in picks and self.utt2spk.get(other) != speaker:
                picks.append(other)
                if len(picks) == count:
                    break
        if not picks:  # one speaker only
            rest = [u for u in utts if u != utt]
            picks = [rest[i] for i in rng.choice(len(rest), min(count, len(rest)), replace=False)]
        return [self._load(u) for u in picks]

    def degrade(
        self, data: UtteranceArrays, utt: str, clean: np.ndarray, rng: np.random.Generator, mode: str
    ) -> np.ndarray:
        """Task ``mode``'s input made from the clean audio of ``utt`` (see metis_cli.tasks.augment)."""
        sr = FrameConditioner.sample_rate
        if mode == "se":
            return add_noise_and_reverb(clean, rng, self.augment, sr, self._others(data, utt, rng, BABBLE_TALKERS))
        if mode == "tse":
            others = self._others(data, utt, rng, 1)
            if not others:
                raise MetisError("TSE fine-tuning needs at least two utterances to mix")
            return mix_interferer(clean, others[0], rng, self.augment)
        return perturb_timbre(clean, rng, self.augment, sr)

    def make_batch(self, data: UtteranceArrays, pieces, generator: torch.Generator) -> dict:
        batch = data.collate(pieces)
        mode = self._draw_mode(generator)
        batch["mode"] = torch.tensor(self.modes.index(mode))
        if TASKS[mode].text:
            ids = [self.phone_ids[self._other_text(p.utt) if self.shuffle_text else p.utt] for p in pieces]
            phones = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
            for i, row in enumerate(ids):
                phones[i, : len(row)] = torch.tensor(row)
            batch["phones"], batch["phone_valid"] = phones, phones > 0
            if self.frame_phones:
                from metis_cli.text.frame_phones import NONE

                placed = torch.full(batch["ssl_tokens"].shape, NONE, dtype=torch.long)
                for i, p in enumerate(pieces):  # TTS pieces are whole utterances
                    placed[i, : p.frames] = torch.from_numpy(self._frame_phones(p.utt, p.frames))
                batch["frame_phones"] = placed
            return batch
        if TASKS[self.task].video:
            return self._video_batch(batch, pieces)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        hop = self.conditioner.hop
        t_max = batch["ssl_tokens"].shape[1]
        condition = torch.zeros(len(pieces), t_max, self.conditioner.dim)
        clean_condition = torch.zeros_like(condition)
        for i, p in enumerate(pieces):
            wav = self._load(p.utt)[p.start * hop : (p.start + p.frames) * hop]
            wav = np.pad(wav, (0, p.frames * hop - len(wav)))
            condition[i, : p.frames] = torch.from_numpy(
                self.conditioner(self.degrade(data, p.utt, wav, rng, mode), p.frames)
            )
            if self.mode_masking[mode].prompt_prob > 0:
                clean_condition[i, : p.frames] = torch.from_numpy(self.conditioner(wav, p.frames))
        batch["condition"], batch["clean_condition"] = condition, clean_condition
        return batch

    def _other_text(self, utt: str) -> str:
        """The validation utterance after ``utt`` (sorted, wrapping round) that has phones: whose text it gets."""
        order = [u for u in sorted(self.val_data.lengths) if u in self.phone_ids]
        return order[(order.index(utt) + 1) % len(order)] if utt in order else utt

    # --- model ----------------------------------------------------------------------------------
    def build_model(self):
        init = self.config.setdefault("init", {})
        if not init.get("exp_dir"):
            raise MetisError("fine-tuning starts from a pre-trained stage-1 model: give --init exp/pretrain_<conf>")
        pre_config = read_exp_config(init["exp_dir"])
        if pre_config.get("task"):
            raise MetisError(
                f"{init['exp_dir']} is a fine-tuned {pre_config['task']} model; start from a pre-trained one (`metis "
                "pretrain`)"
            )
        base_cfg = dict(pre_config["model"])
        resolve_vocab(base_cfg, self.train_data.meta("ssl_tokens"), "vocab_size", "n_clusters", "ssl_tokens")
        base = Stage1Model(Stage1Config.from_dict(base_cfg))
        used = load_weights(
            init["exp_dir"],
            weights_name(pre_config, "stage1"),
            base,
            init.get("checkpoint"),
            what="pre-trained stage-1 model (`metis pretrain`)",
        )
        init["checkpoint"] = str(used.resolve())
        model_cfg = {**base_cfg, **{k: v for k, v in self.config.get("model", {}).items() if v is not None}}
        if self.needs_text:
            vocab = self._phone_vocab(sorted(self.train_data.lengths))
            model_cfg["n_phones"] = model_cfg.get("n_phones") or len(vocab)
            model_cfg["phone_ctc"] = self.ctc_weight > 0
            if len(vocab) > model_cfg["n_phones"]:
                raise MetisError(
                    f"the phone vocabulary has {len(vocab)} symbols, more than model.n_phones {model_cfg['n_phones']}"
                )
            for data in (self.train_data, self.val_data):
                for utt in list(data.lengths if data else []):
                    if utt not in self.phones:  # Omni validation keeps utterances without usable text
                        continue
                    try:
                        self.phone_ids[utt] = vocab.encode(self.phones[utt], utt)
                    except MetisError as exc:
                        if data is self.train_data:
                            raise
                        logger.warning("validation: %s; left out%s", exc, " of TTS" if TASKS[self.task].modes else "")
                        if not TASKS[self.task].modes:
                            del data.lengths[utt]
            if self.frame_phones:
                self._place_phones(vocab)
                model_cfg["frame_condition_dim"] = model_cfg["n_phones"]
        if TASKS[self.task].video:
            if self.use_features:
                model_cfg["visual"] = None
                model_cfg["frame_condition_dim"] = int(self._video(next(iter(self.train_data.lengths))).shape[1])
            else:
                from metis_cli.models.visual import VisualConfig

                model_cfg["frame_condition_dim"] = VisualConfig.from_dict(model_cfg.get("visual") or {}).out_dim
        elif any(not TASKS[mode].text for mode in self.modes):
            model_cfg["frame_condition_dim"] = model_cfg.get("frame_condition_dim") or self.conditioner.dim
            if model_cfg["frame_condition_dim"] != self.conditioner.dim:
                raise MetisError(
                    f"model.frame_condition_dim is {model_cfg['frame_condition_dim']} but the SSL features have "
                    f"{self.conditioner.dim} dims"
                )
        self.config["model"] = model_cfg
        model = Stage1Model(Stage1Config.from_dict(model_cfg))
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
        assert not unexpected and all(k.split(".")[0] in CONDITION_MODULES for k in missing)
        adaptation = AdaptationConfig(**self.config["adaptation"])
        counts = adapt(model, adaptation)
        logger.info(
            "%s fine-tuning (%s) from %s: %s trainable parameters of %s (LoRA %s, condition modules %s)",
            self.task,
            adaptation.mode,
            used,
            f"{counts['trainable']:,}",
            f"{counts['total']:,}",
            f"{counts['lora']:,}",
            f"{counts['condition']:,}",
        )
        self.counts = counts
        return model

    def validate(self, trainer: Trainer, out_dir) -> dict:
        if TASKS[self.task].modes:  # each task of the mixture on its own, and their mean
            result = {}
            for mode in self.modes:
                spellable = None  # TTS on the utterances whose words it can spell
                if TASKS[mode].text and self.val_data:
                    spellable = {u: n for u, n in self.val_data.lengths.items() if u in self.phone_ids}
                result.update(self._validate_variant(trainer, out_dir, mode, spellable, forced_mode=mode))
            if result:
                for key in ("ce_bits", "acc"):
                    result[key] = sum(result[f"{key}_{m}"] for m in self.modes) / len(self.modes)
        else:
            result = super().validate(trainer, out_dir)
            if not result or (not TASKS[self.task].video and not TASKS[self.task].text):
                return result
            if TASKS[self.task].video:
                result.update(self._validate_variant(trainer, out_dir, "shuffled_video", shuffle_video=True))
            else:
                result.update(self._validate_variant(trainer, out_dir, "shuffled_text", shuffle_text=True))
                if self.frame_phones == "words":  # the phones placed as decoding places them (mean durations)
                    result.update(self._validate_variant(trainer, out_dir, "durations", place_by_durations=True))
        if result:
            (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        return result

    def _validate_variant(self, trainer: Trainer, out_dir, name: str, lengths: dict | None = None, **settings) -> dict:
        """The validation with attributes ``settings`` (and the validation utterances ``lengths``) in force,
        in ``out_dir/name``, its keys suffixed ``_name``; everything is restored after."""
        saved = {key: getattr(self, key) for key in settings}
        saved_lengths = self.val_data.lengths if self.val_data else None
        try:
            for key, value in settings.items():
                setattr(self, key, value)
            if lengths is not None:
                self.val_data.lengths = lengths
            found = super().validate(trainer, out_dir / name)
        finally:
            for key, value in saved.items():
                setattr(self, key, value)
            if self.val_data:
                self.val_data.lengths = saved_lengths
        return {f"{k}_{name}": v for k, v in found.items()}

    def loss(self, batch, generator, model, layer=None):
        tokens, valid = batch["ssl_tokens"], batch["valid"]
        mode = self.modes[int(batch["mode"])]
        t, prompts, masked = sample_masks(batch["lengths"].cpu(), self.mode_masking[mode], generator)
        t, prompts, masked = t.to(tokens.device), prompts.to(tokens.device), masked.to(tokens.device)
        if TASKS[mode].text:
            conditions = {"phones": batch["phones"], "phone_valid": batch["phone_valid"] & (prompts > 0)[:, None]}
            if "frame_phones" in batch:  # one-hot phone per frame; none over the prompt (and padding)
                from metis_cli.text.frame_phones import NONE, one_hot_condition

                in_prompt = torch.arange(tokens.shape[1], device=tokens.device)[None] < prompts[:, None]
                placed = batch["frame_phones"].masked_fill(in_prompt, NONE)
                conditions["frame_condition"] = one_hot_condition(placed, self.config["model"]["frame_condition_dim"])
        elif TASKS[mode].video:
            in_prompt = torch.arange(tokens.shape[1], device=tokens.device)[None] < prompts[:, None]
            conditions = {
                "video": batch["video"],
                "video_valid": batch["video_valid"],
                "video_offset": batch["video_offset"],
                "visual_zero": in_prompt,
            }
        else:
            in_prompt = torch.arange(tokens.shape[1], device=tokens.device)[None] < prompts[:, None]
            conditions = {
                "frame_condition": torch.where(in_prompt[..., None], batch["clean_condition"], batch["condition"])
            }
        ctc_rows = prompts > 0  # the rows that see their text (the others are the unconditional case)
        with_ctc = bool(TASKS[mode].text and self.ctc_weight and model.training and ctc_rows.any())
        out = model(tokens, masked, valid, t, with_phone_ctc=with_ctc, **conditions)
        logits, phone_logits = out if with_ctc else (out, None)
        loss, correct, count = masked_cross_entropy(logits, tokens, masked)
        result = {"loss": loss, "correct": correct, "count": count}
        if with_ctc:
            ctc = phone_ctc_loss(phone_logits[ctc_rows], valid[ctc_rows], batch["phones"][ctc_rows])
            result.update(objective=loss + self.ctc_weight * ctc, ctc=ctc.detach())
        return result


def phone_ctc_loss(phone_logits: torch.Tensor, valid: torch.Tensor, phones: torch.Tensor) -> torch.Tensor:
    """CTC of each row's phones (ids > 0, padded with 0, the blank) given its frames' phone logits [B, T, n_phones]
    over its valid frames; the mean over rows of the loss per target phone (nats)."""
    log_probs = phone_logits.float().log_softmax(-1).transpose(0, 1)
    return torch.nn.functional.ctc_loss(
        log_probs, phones, valid.sum(1), (phones > 0).sum(1), blank=0, reduction="mean", zero_infinity=True
    )


def finetune(config: dict, exp_dir, train_dirs, val_dirs=()) -> dict:
    trainer = Trainer(exp_dir, config, TrainConfig.from_dict(config.get("train", {})), FinetuneLearner.resolve)
    learner = FinetuneLearner(trainer, config, train_dirs, val_dirs)
    if trainer.dist.main:
        (trainer.exp_dir / "parameters.json").write_text(json.dumps(learner.counts, indent=2) + "\n")
    result = trainer.fit(learner)
    result["parameters"] = learner.counts
    if trainer.dist.main and config.get("adaptation", {}).get("mode", "lora") != "full":
        # what was trained, apart from the pre-trained model (<exp>/adapter; metis_cli/tasks/adapter_files.py)
        from metis_cli.tasks.adapter_files import export_adapter

        info = export_adapter(trainer.exp_dir)
        result["adapter"] = {k: info[k] for k in ("parameters", "bytes", "model_bytes")}
    return result
