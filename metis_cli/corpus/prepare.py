"""Kaldi data dirs from the corpora a user brings, read in their published directory layouts.

Every preparer writes the same three sets into ``out_dir`` -- ``train`` and ``dev`` (clean speech: codec,
pre-training, S2A and fine-tuning data) and ``test`` (held-out speakers, with the task's inputs) -- so a
recipe's corpus file only names the corpus. Audio stays where it is (``wav.scp`` points at it), except
LRS3's, which is extracted once from the mp4 files into ``out_dir/wav``. Random choices (prompts,
enrollments, references) come from ``seed``. ``metis data validate`` checks the result (stage 0 runs it).

=========== ======================================================================= ============================
corpus      layout read (``<dir>`` is ``corpus_dir``)                               test set inputs
=========== ======================================================================= ============================
librispeech ``<dir>/<part>/<spk>/<chapter>/<spk>-<chapter>-<n>.flac`` and              prompt.scp (TTS)
            ``<spk>-<chapter>.trans.txt``
libritts    ``<dir>/<part>/<spk>/<chapter>/<utt>.wav`` and ``<utt>.normalized.txt``   prompt.scp (TTS)
vctk        ``<dir>/wav48_silence_trimmed/<spk>/<spk>_<n>_mic1.flac`` (0.92) or         src.scp, ref.scp (VC)
            ``<dir>/wav48/<spk>/<spk>_<n>.wav`` (0.80), ``<dir>/txt/<spk>/<spk>_<n>.txt``
dns         ``<dir>/datasets/clean/**/*.wav`` (training speech) and                    noisy.scp (SE)
            ``<dir>/test_set/synthetic/no_reverb/{clean,noisy}/*_fileid_<n>.wav``
libri2mix   ``<dir>/wav16k/min/<part>/{mix_clean,s1,s2}/<utt1>_<utt2>.wav``            mix.scp, enroll.scp,
            (transcripts from a LibriSpeech copy, optional)                           interferer.scp (TSE)
lrs3        ``<dir>/<part>/<spk>/<clip>.mp4`` and ``<clip>.txt`` (``Text:  WORDS``)    video.scp, prompt.scp (L2S)
=========== ======================================================================= ============================
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from metis_cli.audio import audio_info
from metis_cli.corpus.rng import rng_for
from metis_cli.data.datadir import DataDir, sort_key
from metis_cli.errors import DataDirError

log = logging.getLogger(__name__)

CORPORA = ("librispeech", "libritts", "vctk", "dns", "libri2mix", "lrs3")
SETS = ("train", "dev", "test")


@dataclass
class Utt:
    """One utterance of a prepared set; ``inputs`` holds its task scps (``noisy.scp``: path, ...)."""

    speaker: str
    audio: str
    text: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # other utt2* tables, e.g. utt2source_spk


@dataclass
class PrepareOptions:
    train_parts: list[str] | None = None  # default: every part whose name starts with "train"
    dev_part: str | None = None
    test_part: str | None = None
    test_speakers: int = 8  # vctk: the last N speakers (sorted) are held out
    dev_fraction: float = 0.02  # corpora without a dev part: this share of train utterances, at least 1
    mixture: str = "mix_clean"  # libri2mix: mix_clean or mix_both (with noise)
    transcripts: Path | None = None  # libri2mix: a LibriSpeech copy for the texts
    seed: int = 0


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataDirError(f"{path}: {what} not found; is this the right corpus dir?")
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _parts(corpus_dir: Path, options: PrepareOptions, dev: str | None, test: str) -> tuple[list[str], str | None, str]:
    """The train parts, dev part (None: the corpus has none) and test part of a corpus split into part
    folders, checked to exist."""
    present = sorted(p.name for p in corpus_dir.iterdir() if p.is_dir())
    train = options.train_parts or [p for p in present if p.startswith("train")]
    dev, test = options.dev_part or dev, options.test_part or test
    for part in [*train, *([dev] if dev else []), test]:
        if part not in present:
            raise DataDirError(f"{corpus_dir}: part '{part}' not found (present: {', '.join(present) or 'nothing'})")
    if not train:
        raise DataDirError(f"{corpus_dir}: no training part (a folder named train*); pass --train-parts")
    return train, dev, test


def _write_set(out: Path, utts: dict[str, Utt], what: str) -> DataDir:
    """wav.scp, text (when every utterance has one), utt2spk, spk2utt, utt2dur and the task scps."""
    if not utts:
        raise DataDirError(f"{out}: no utterances found for the {what}")
    out.mkdir(parents=True, exist_ok=True)
    dd = DataDir(out)
    dd.write("wav.scp", {u: x.audio for u, x in utts.items()})
    if all(x.text for x in utts.values()):
        dd.write("text", {u: x.text for u, x in utts.items()})
    dd.write_utt2spk({u: x.speaker for u, x in utts.items()})
    durations = {}
    for utt, x in utts.items():
        durations[utt] = f"{audio_info(x.audio, utt).duration:.3f}"
    dd.write("utt2dur", durations)
    for name in sorted({n for x in utts.values() for n in (*x.inputs, *x.extra)}):
        table = {u: (x.inputs.get(name) or x.extra.get(name)) for u, x in utts.items()}
        dd.write(name, {u: v for u, v in table.items() if v})
    log.info("%s: %d utterances, %d speakers", out, len(utts), len({x.speaker for x in utts.values()}))
    return dd


def _by_speaker(utts: dict[str, Utt]) -> dict[str, list[str]]:
    """speaker -> its utterance ids, sorted."""
    by_speaker: dict[str, list[str]] = {}
    for utt in sorted(utts, key=sort_key):
        by_speaker.setdefault(utts[utt].speaker, []).append(utt)
    return by_speaker


def _split_dev(utts: dict[str, Utt], options: PrepareOptions) -> tuple[dict[str, Utt], dict[str, Utt]]:
    """(train, dev): dev takes ``dev_fraction`` of every speaker's utterances (seen speakers, as mini_dev)."""
    dev_ids = set()
    for spk, ids in _by_speaker(utts).items():
        if len(ids) < 2:
            continue
        n = max(1, round(len(ids) * options.dev_fraction))
        picks = rng_for(options.seed, "dev", spk).choice(len(ids), size=n, replace=False)
        dev_ids.update(ids[i] for i in picks)
    return {u: x for u, x in utts.items() if u not in dev_ids}, {u: x for u, x in utts.items() if u in dev_ids}


def _add_prompts(utts: dict[str, Utt], options: PrepareOptions, scp: str = "prompt.scp") -> dict[str, Utt]:
    """For each utterance another utterance of its speaker as the prompt (prompt.scp, utt2prompt,
    prompt_text); speakers with a single utterance cannot be prompted and are left out."""
    by_speaker = _by_speaker(utts)
    kept = {}
    for utt, x in utts.items():
        choices = [u for u in by_speaker[x.speaker] if u != utt]
        if not choices:
            log.warning(
                "%s: the only utterance of speaker %s, no prompt for it: left out of the test set", utt, x.speaker
            )
            continue
        prompt = choices[rng_for(options.seed, "prompt", utt).integers(len(choices))]
        x.inputs[scp] = utts[prompt].audio
        x.extra["utt2prompt"] = prompt
        if utts[prompt].text:
            x.extra["prompt_text"] = utts[prompt].text
        kept[utt] = x
    return kept


# --- LibriSpeech and LibriTTS -------------------------------------------------------------------------


def _librispeech_part(part_dir: Path) -> dict[str, Utt]:
    utts = {}
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            audio = trans.parent / f"{utt}.flac"
            if not audio.is_file():
                raise DataDirError(f"{trans}: line {number}: {audio.name} not found")
            # LibriSpeech transcripts are upper case; the phonemizer reads lower case as words.
            utts[utt] = Utt(utt.split("-")[0], str(audio), _one_line(text).lower())
    return utts


def _libritts_part(part_dir: Path) -> dict[str, Utt]:
    utts = {}
    for audio in sorted(part_dir.glob("*/*/*.wav")):
        text_file = audio.with_suffix(".normalized.txt")
        if not text_file.is_file():
            log.warning("%s: no %s, left out", audio, text_file.name)
            continue
        utts[audio.stem] = Utt(audio.stem.split("_")[0], str(audio), _one_line(text_file.read_text(encoding="utf-8")))
    return utts


def _prepare_libri(
    read_part, corpus_dir: Path, options: PrepareOptions, dev: str, test: str
) -> dict[str, dict[str, Utt]]:
    train_parts, dev_part, test_part = _parts(corpus_dir, options, dev, test)
    train: dict[str, Utt] = {}
    for part in train_parts:
        found = read_part(corpus_dir / part)
        if clash := sorted(set(found) & set(train)):
            raise DataDirError(f"{corpus_dir / part}: utterance '{clash[0]}' is also in another training part")
        train.update(found)
    return {
        "train": train,
        "dev": read_part(corpus_dir / dev_part),
        "test": _add_prompts(read_part(corpus_dir / test_part), options),
    }


def prepare_librispeech(corpus_dir: Path, options: PrepareOptions):
    return _prepare_libri(_librispeech_part, corpus_dir, options, "dev-clean", "test-clean")


def prepare_libritts(corpus_dir: Path, options: PrepareOptions):
    return _prepare_libri(_libritts_part, corpus_dir, options, "dev-clean", "test-clean")


# --- VCTK ---------------------------------------------------------------------------------------------


def _text_key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def prepare_vctk(corpus_dir: Path, options: PrepareOptions):
    """train/dev: the first speakers; test: VC pairs among the last ``test_speakers`` speakers. A pair
    converts speaker A's utterance to speaker B where B read the same text (VCTK's shared passages), so the
    ground truth (wav.scp) is B's reading; ref.scp is another utterance of B."""
    txt_dir = _need_dir(corpus_dir / "txt", "the txt/ folder of VCTK")
    if (corpus_dir / "wav48_silence_trimmed").is_dir():
        wav_dir, pattern = corpus_dir / "wav48_silence_trimmed", "{utt}_mic1.flac"
    else:
        wav_dir, pattern = (
            _need_dir(corpus_dir / "wav48", "wav48_silence_trimmed/ (0.92) or wav48/ (0.80)"),
            "{utt}.wav",
        )
    utts: dict[str, Utt] = {}
    for text_file in sorted(txt_dir.glob("*/*.txt")):
        utt, speaker = text_file.stem, text_file.parent.name
        audio = wav_dir / speaker / pattern.format(utt=utt)
        if not audio.is_file():  # VCTK lacks audio for a few transcripts
            continue
        utts[utt] = Utt(speaker, str(audio), _one_line(text_file.read_text(encoding="utf-8")))
    speakers = sorted({x.speaker for x in utts.values()}, key=sort_key)
    if len(speakers) <= options.test_speakers + 1:
        raise DataDirError(
            f"{corpus_dir}: {len(speakers)} speakers, need more than --test-speakers {options.test_speakers} + 1"
        )
    held_out = set(speakers[-options.test_speakers :])
    train, dev = _split_dev({u: x for u, x in utts.items() if x.speaker not in held_out}, options)
    test_utts = {u: x for u, x in utts.items() if x.speaker in held_out}
    by_text: dict[str, dict[str, str]] = {}  # text -> speaker -> utterance
    for utt, x in sorted(test_utts.items()):
        by_text.setdefault(_text_key(x.text), {}).setdefault(x.speaker, utt)
    pairs = {}
    for utt, x in sorted(test_utts.items()):
        targets = sorted(s for s in by_text[_text_key(x.text)] if s != x.speaker)
        if not targets:
            continue
        target = targets[rng_for(options.seed, "vc-target", utt).integers(len(targets))]
        truth = by_text[_text_key(x.text)][target]
        refs = [u for u, y in test_utts.items() if y.speaker == target and _text_key(y.text) != _text_key(x.text)]
        if not refs:
            continue
        ref = sorted(refs)[rng_for(options.seed, "vc-ref", utt).integers(len(refs))]
        pairs[f"{truth}_from_{x.speaker}"] = Utt(
            target,
            test_utts[truth].audio,
            test_utts[truth].text,
            inputs={"src.scp": x.audio, "ref.scp": test_utts[ref].audio},
            extra={"utt2source_spk": x.speaker},
        )
    return {"train": train, "dev": dev, "test": pairs}


# --- DNS Challenge ------------------------------------------------------------------------------------

_READER = re.compile(r"reader_(\d+)")
_FILEID = re.compile(r"fileid_(\d+)$")


def prepare_dns(corpus_dir: Path, options: PrepareOptions):
    """train/dev: the clean training speech (speaker = the ``reader_<id>`` in the name, else the file);
    test: the synthetic no-reverb test set, noisy/clean pairs matched by ``fileid_<n>``. DNS has no
    transcripts: WER is scored with the clean reference's ASR transcript only if you add a text file."""
    clean_dir = _need_dir(corpus_dir / "datasets" / "clean", "datasets/clean (the DNS training speech)")
    utts = {}
    for audio in sorted(clean_dir.rglob("*.wav")):
        reader = _READER.search(audio.stem)
        speaker = f"reader{reader.group(1)}" if reader else audio.stem
        utts[f"{speaker}_{audio.stem}" if reader else audio.stem] = Utt(speaker, str(audio))
    train, dev = _split_dev(utts, options)
    test_dir = corpus_dir / "test_set" / "synthetic" / "no_reverb"
    clean = {
        m.group(1): p
        for p in (_need_dir(test_dir / "clean", "test_set/synthetic/no_reverb/clean")).glob("*.wav")
        if (m := _FILEID.search(p.stem))
    }
    test = {}
    for noisy in sorted(_need_dir(test_dir / "noisy", "test_set/synthetic/no_reverb/noisy").glob("*.wav")):
        m = _FILEID.search(noisy.stem)
        if not m or m.group(1) not in clean:
            raise DataDirError(f"{noisy}: no clean file with the same fileid_<n> in {test_dir / 'clean'}")
        utt = f"fileid_{int(m.group(1)):05d}"
        test[utt] = Utt(utt, str(clean[m.group(1)]), inputs={"noisy.scp": str(noisy)})
    return {"train": train, "dev": dev, "test": test}


# --- Libri2Mix ----------------------------------------------------------------------------------------


def _transcripts(librispeech: Path | None) -> dict[str, str]:
    if librispeech is None:
        return {}
    texts = {}
    for trans in _need_dir(librispeech, "LibriSpeech copy").glob("*/*/*/*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.strip().partition(" ")
            if utt:
                texts[utt] = _one_line(text).lower()
    return texts


def prepare_libri2mix(corpus_dir: Path, options: PrepareOptions):
    """train/dev: the single-speaker sources (s1, s2) of the train and dev mixtures; test: each test
    mixture twice, once per target speaker (utt id ``<target utt>_<other utt>``), the other source as the
    interferer and another utterance of the target speaker from the test sources as enrollment."""
    root = _need_dir(corpus_dir / "wav16k" / "min", "wav16k/min (Libri2Mix 16 kHz, min mode)")
    train_parts, dev_part, test_part = _parts(root, options, "dev", "test")
    texts = _transcripts(options.transcripts)

    def sources(part: str) -> dict[str, Utt]:
        found = {}
        for s in ("s1", "s2"):
            for audio in sorted(_need_dir(root / part / s, f"{part}/{s}").glob("*.wav")):
                ids = audio.stem.split("_")
                if len(ids) != 2:
                    raise DataDirError(f"{audio}: expected a name <utt1>_<utt2>.wav")
                utt = ids[int(s[1]) - 1]
                found.setdefault(utt, Utt(utt.split("-")[0], str(audio), texts.get(utt)))
        return found

    train: dict[str, Utt] = {}
    for part in train_parts:
        train.update(sources(part))
    pool = sources(test_part)
    test = {}
    for mix in sorted(_need_dir(root / test_part / options.mixture, f"{test_part}/{options.mixture}").glob("*.wav")):
        first, second = mix.stem.split("_")
        for target, other, s, o in ((first, second, "s1", "s2"), (second, first, "s2", "s1")):
            speaker = target.split("-")[0]
            enrolls = sorted(u for u, x in pool.items() if x.speaker == speaker and u != target)
            if not enrolls:
                log.warning("%s: speaker %s has no other utterance for enrollment, target left out", mix, speaker)
                continue
            enroll = enrolls[rng_for(options.seed, "enroll", target, other).integers(len(enrolls))]
            test[f"{target}_{other}"] = Utt(
                speaker,
                str(root / test_part / s / mix.name),
                texts.get(target),
                inputs={
                    "mix.scp": str(mix),
                    "enroll.scp": pool[enroll].audio,
                    "interferer.scp": str(root / test_part / o / mix.name),
                },
                extra={
                    "utt2enroll": enroll,
                    "utt2interferer": other,
                    **({"prompt_text": pool[enroll].text} if pool[enroll].text else {}),
                },
            )
    return {"train": train, "dev": sources(dev_part), "test": test}


# --- LRS3 ---------------------------------------------------------------------------------------------


def extract_audio(video: Path, out: Path, sample_rate: int = 16000) -> Path:
    """The audio track of a video file as 16-bit mono wav (PyAV); kept if already there."""
    import av
    import numpy as np

    from metis_cli.audio import save_audio

    if out.is_file():
        return out
    try:
        with av.open(str(video)) as container:
            if not container.streams.audio:
                raise DataDirError(f"{video}: no audio track")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.FFmpegError as exc:
        raise DataDirError(f"{video}: cannot decode ({exc})") from None
    if not chunks:
        raise DataDirError(f"{video}: the audio track is empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_audio(out, np.concatenate(chunks), sample_rate)


def _lrs3_part(part_dir: Path, wav_dir: Path) -> dict[str, Utt]:
    from rich.progress import track

    utts = {}
    videos = sorted(part_dir.glob("*/*.mp4"))
    for video in track(videos, description=f"audio of {part_dir.name}", transient=True):
        text_file = video.with_suffix(".txt")
        if not text_file.is_file():
            raise DataDirError(f"{video}: no transcript {text_file.name}")
        first = text_file.read_text(encoding="utf-8").splitlines()[:1]
        if not first or not first[0].startswith("Text:"):
            raise DataDirError(f"{text_file}: expected a first line 'Text:  <words>'")
        speaker = video.parent.name
        utt = f"{speaker}_{video.stem}"
        audio = extract_audio(video, wav_dir / speaker / f"{video.stem}.wav")
        utts[utt] = Utt(
            speaker, str(audio), _one_line(first[0][len("Text:") :]).lower(), inputs={"video.scp": str(video)}
        )
    return utts


def prepare_lrs3(corpus_dir: Path, options: PrepareOptions, out_dir: Path):
    """train/dev: trainval (dev: ``dev_fraction`` of it); test: the test part with a same-speaker
    prompt. ``pretrain`` is added to train only when named in ``train_parts``."""
    train_parts, _, test_part = _parts(corpus_dir, options, None, "test")
    utts: dict[str, Utt] = {}
    for part in train_parts:
        utts.update(_lrs3_part(corpus_dir / part, out_dir / "wav" / part))
    train, dev = _split_dev(utts, options)
    return {
        "train": train,
        "dev": dev,
        "test": _add_prompts(_lrs3_part(corpus_dir / test_part, out_dir / "wav" / test_part), options),
    }


PREPARERS = {
    "librispeech": prepare_librispeech,
    "libritts": prepare_libritts,
    "vctk": prepare_vctk,
    "dns": prepare_dns,
    "libri2mix": prepare_libri2mix,
}


def prepare_corpus(corpus: str, corpus_dir, out_dir, options: PrepareOptions | None = None) -> dict[str, DataDir]:
    """Writes ``out_dir/{train,dev,test}`` for ``corpus`` (one of CORPORA) read from ``corpus_dir``."""
    options = options or PrepareOptions()
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if corpus not in CORPORA:
        raise DataDirError(
            f"unknown corpus '{corpus}': choose one of {', '.join(CORPORA)} (or the embedded corpus: metis data "
            "make-mini)"
        )
    _need_dir(corpus_dir, f"{corpus} corpus dir")
    if corpus == "lrs3":  # the only one whose audio is extracted into out_dir
        sets = prepare_lrs3(corpus_dir, options, out_dir)
    else:
        sets = PREPARERS[corpus](corpus_dir, options)
    return {name: _write_set(out_dir / name, sets[name], f"{corpus} {name} set") for name in SETS}
