"""Training the phonetic front end (``metis train-phonetic``): frame-wise cross-entropy against the phone parts
that a data dir's ``phones.ctm`` gives, on random segments; the model and its extractor are in
:mod:`metis_cli.ssl.phonetic`. The MFCC of the train and dev sets are computed once, in memory (the corpora
this front end is for are small: the embedded corpus's train set is 33 minutes)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metis_cli.config import check_keys, complete_sections, plain, read_exp_config
from metis_cli.data.datadir import DataDir, TimedToken, read_ctm
from metis_cli.errors import MetisError
from metis_cli.models.transformer import count_parameters
from metis_cli.ssl.phonetic import (
    IGNORE,
    MODEL_DIR,
    MODEL_NAME,
    PhoneticConfig,
    PhoneticModel,
    frame_targets,
    phone_hits,
    save_model,
    utterance_norm,
)
from metis_cli.train.trainer import TrainConfig, Trainer, step_seed, warmup_cosine

logger = logging.getLogger(__name__)
SECTIONS = ("model", "data", "optim", "train")


@dataclass
class PhoneticDataConfig:
    train: str = ""  # data dir with wav.scp and phones.ctm (filled in by train_phonetic)
    dev: str = ""  # the same, for validation ("" = none)
    segment_frames: int = 200
    batch_size: int = 16
    # Kaldi-style speed perturbation of the train set (resampling: tempo and formants move together, as
    # between speakers); one copy of each utterance per factor, its phone timings scaled with it.
    speed_perturb: list = field(default_factory=lambda: [1.0])
    # Multi-condition training (not in the recipes: SE's WER -4.6 points, TTS's +15, VC's +7; docs/condition_tokens.md):
    # this many noisy copies of each copy above, noise and reverberation drawn as SE fine-tuning draws them
    # (augment's defaults; babble from the utterances read before it), with the clean utterance's phone labels.
    # Drawn once, seeded by train.seed.
    noisy_copies: int = 0


@dataclass
class PhoneticOptimConfig:
    lr: float = 2e-3
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.01
    warmup_steps: int = 50
    final_lr_ratio: float = 0.05


def resolve_phonetic_config(config: dict) -> dict:
    check_keys(config, SECTIONS, "phonetic config sections")
    out = complete_sections(
        config, {"data": PhoneticDataConfig, "optim": PhoneticOptimConfig, "train": TrainConfig}, "phonetic config"
    )
    out["model"] = asdict(PhoneticConfig.from_dict(config.get("model") or {}))
    return plain(out)


def speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """``wav`` played ``factor`` times faster (0.9: slower and lower), by resampling."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    if factor == 1.0:
        return wav
    ratio = Fraction(factor).limit_denominator(100)
    return resample_poly(wav, ratio.denominator, ratio.numerator).astype(np.float32)


def load_labelled(
    data_dir, phones: dict[str, int], n_states: int, speeds=(1.0,), noisy_copies: int = 0, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """utt -> (normalised MFCC [T, 39], frame classes [T]) for every utterance of a data dir with a timing;
    with speeds other than 1.0, ``<utt>-sp<factor>`` copies too; with ``noisy_copies``, ``<key>-noisy<k>``
    copies of each of those, noise and reverberation as SE fine-tuning draws them (seeded by ``seed`` and the
    utterance's place in the sorted list), labelled as the clean copy."""
    from metis_cli.audio import load_audio
    from metis_cli.log import progress
    from metis_cli.ssl.extractors import SAMPLE_RATE, MFCCExtractor
    from metis_cli.tasks.augment import BABBLE_TALKERS, AugmentConfig, add_noise_and_reverb

    data = DataDir(data_dir)
    ctm = phones_ctm(data.path)
    timings, sources, mfcc = read_ctm(ctm), data.audio_sources(), MFCCExtractor()
    missing = sorted(set(sources) - set(timings))
    if missing:
        logger.info("%s: %d utterances have no phone timing, left out (e.g. %s)", data.path, len(missing), missing[0])
    out, talkers, augment = {}, [], AugmentConfig()
    with progress() as bar:
        task = bar.add_task(f"mfcc {data.path.name}", total=len(sources))
        for index, utt in enumerate(sorted(sources)):
            bar.advance(task)
            if utt not in timings:
                continue
            source, start, end = sources[utt]
            wav, _ = load_audio(source, SAMPLE_RATE, start=start, end=end, utt_id=utt, commands=True)
            rng = np.random.default_rng([seed, index])
            for factor in speeds:
                fast = speed(wav, factor)
                scaled = [TimedToken(t.start / factor, t.duration / factor, t.token) for t in timings[utt]]
                key = utt if factor == 1.0 else f"{utt}-sp{factor:g}"
                feats = utterance_norm(mfcc(fast))
                out[key] = (feats, frame_targets(scaled, len(feats), phones, n_states))
                for k in range(noisy_copies):
                    noisy = utterance_norm(mfcc(add_noise_and_reverb(fast, rng, augment, SAMPLE_RATE, talkers)))
                    out[f"{key}-noisy{k}"] = (noisy, frame_targets(scaled, len(noisy), phones, n_states))
            if noisy_copies:
                talkers = [*talkers, wav][-BABBLE_TALKERS:]
    if not out:
        raise MetisError(f"{data.path}: no utterance has a phone timing in phones.ctm")
    return out


def phones_ctm(data_dir) -> Path:
    """``<data_dir>/phones.ctm``, which must exist."""
    ctm = Path(data_dir) / "phones.ctm"
    if not ctm.is_file():
        raise MetisError(
            f"{ctm}: not found; the phonetic front end learns from phone timings (the embedded corpus has them); "
            "use another SSL extractor (builtin, w2v-BERT 2.0) for a corpus without them"
        )
    return ctm


def phone_inventory(data_dir) -> list[str]:
    return sorted({t.token for items in read_ctm(phones_ctm(data_dir)).values() for t in items})


class PhoneticLearner:
    def __init__(self, trainer: Trainer, config: dict):
        self.data_cfg, optim = PhoneticDataConfig(**config["data"]), PhoneticOptimConfig(**config["optim"])
        self.cfg = PhoneticConfig.from_dict(config["model"])
        index = {p: i for i, p in enumerate(self.cfg.phones)}
        self.train_set = load_labelled(
            self.data_cfg.train,
            index,
            self.cfg.n_states,
            self.data_cfg.speed_perturb,
            self.data_cfg.noisy_copies,
            trainer.train.seed,
        )
        self.dev_set = load_labelled(self.data_cfg.dev, index, self.cfg.n_states) if self.data_cfg.dev else {}
        self.utts = sorted(self.train_set)
        trainer.seed_weights()
        self.model = trainer.add_model(MODEL_NAME, PhoneticModel(self.cfg))
        opt = torch.optim.AdamW(
            self.model.parameters(), lr=float(optim.lr), betas=tuple(optim.betas), weight_decay=optim.weight_decay
        )
        schedule = warmup_cosine(optim.warmup_steps, trainer.train.max_steps, float(optim.final_lr_ratio))
        trainer.add_optimizer(MODEL_NAME, opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule))

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random segments (whole utterances when shorter, the rest padding with no loss)."""
        size, seg = self.data_cfg.batch_size, self.data_cfg.segment_frames
        x = np.zeros((size, seg, self.cfg.input_dim), dtype=np.float32)
        y = np.full((size, seg), IGNORE, dtype=np.int64)
        for i in range(size):
            feats, target = self.train_set[self.utts[rng.integers(len(self.utts))]]
            start = int(rng.integers(0, max(1, len(feats) - seg + 1)))
            n = min(seg, len(feats) - start)
            x[i, :n], y[i, :n] = feats[start : start + n], target[start : start + n]
        return torch.from_numpy(x), torch.from_numpy(y)

    def train_step(self, trainer: Trainer, step: int) -> dict:
        rng = np.random.default_rng(step_seed(trainer.train.seed, step, trainer.dist.rank))
        x, y = self.batch(rng)
        logits = self.model(x.to(trainer.dist.device)).float()
        y = y.to(trainer.dist.device)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        loss.backward()
        accuracy = self._phone_accuracy(logits, y)
        grad_norm = trainer.optimizer_step(MODEL_NAME, self.model.parameters())
        return {"ce": loss.detach(), "phone_acc": accuracy, "grad_norm": grad_norm}

    def _phone_accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """Frames whose most likely class is a part of the right phone."""
        hits, frames = phone_hits(logits, y, self.cfg.n_states)
        return hits / frames if frames else 0.0

    @torch.no_grad()
    def validate(self, trainer: Trainer, out_dir: Path) -> dict:
        """Whole dev utterances: cross-entropy, class and phone accuracy per frame."""
        if not self.dev_set:
            return {}
        model = trainer.unwrap(self.model)
        ce, hits, phones, frames = 0.0, 0, 0, 0
        for feats, target in self.dev_set.values():
            logits = model(torch.from_numpy(feats)[None].to(trainer.dist.device))[0].float().cpu()
            y = torch.from_numpy(target)
            keep = y != IGNORE
            if not keep.any():
                continue
            ce += float(F.cross_entropy(logits[keep], y[keep], reduction="sum"))
            pred = logits.argmax(-1)[keep]
            hits += int((pred == y[keep]).sum())
            phones += phone_hits(logits, y, self.cfg.n_states)[0]
            frames += int(keep.sum())
        return {"ce": ce / frames, "acc": hits / frames, "phone_acc": phones / frames} if frames else {}


def train_phonetic(config: dict, exp_dir, train_dir, dev_dir=None) -> dict:
    """Trains (or resumes) the phonetic front end on a labelled data dir, then writes ``<exp_dir>/model``,
    the dir ``metis extract-ssl --extractor`` takes. Returns the trainer's result with ``model`` added."""
    config = resolve_phonetic_config(config)
    config["data"]["train"] = str(Path(train_dir).resolve())
    config["data"]["dev"] = str(Path(dev_dir).resolve()) if dev_dir else ""
    if not config["model"]["phones"]:
        config["model"]["phones"] = phone_inventory(train_dir)
    trainer = Trainer(exp_dir, config, TrainConfig.from_dict(config["train"]), resolve_phonetic_config)
    learner = PhoneticLearner(trainer, config)
    logger.info(
        "phonetic front end: %.2fM parameters, %d phones x %d parts, %d-dim bottleneck, +-%d frames of context",
        count_parameters(trainer.unwrap(learner.model)) / 1e6,
        len(learner.cfg.phones),
        learner.cfg.n_states,
        learner.cfg.bottleneck_dim,
        learner.cfg.receptive_field(),
    )
    result = trainer.fit(learner)
    if trainer.dist.main:
        result["model"] = str(Path(exp_dir) / MODEL_DIR)
        export_phonetic(exp_dir)
    return result


def export_phonetic(exp_dir, checkpoint=None) -> dict:
    """``<exp_dir>/model`` from the newest readable checkpoint (or ``checkpoint``)."""
    from metis_cli.checkpoint import load_weights

    exp_dir = Path(exp_dir)
    config = read_exp_config(exp_dir)
    model = PhoneticModel(PhoneticConfig.from_dict(config["model"]))
    used = load_weights(exp_dir, MODEL_NAME, model, checkpoint, what="phonetic front end")
    return save_model(model, exp_dir / MODEL_DIR, {"checkpoint": str(used.resolve()), "train": config["data"]["train"]})
