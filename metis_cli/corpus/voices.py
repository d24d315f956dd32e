"""The Debian speech engines the embedded corpus is made from: flite and festival, with phone timings.

``synthesize`` renders one sentence with one base voice and returns the engine's wav and its phone
and word timings (end times from the engine itself, so they match the audio exactly).
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from metis_cli.data.datadir import TimedToken
from metis_cli.errors import CorpusError

FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"),)
SILENCE = "pau"


@dataclass(frozen=True)
class Voice:
    """A base voice. ``f0_control``: the engine can move its mean pitch without moving formants;
    ``stretch_control``: the engine can slow down or speed up its own durations."""

    name: str
    engine: str  # "flite" or "festival"
    engine_voice: str
    debian_package: str
    f0_control: bool
    stretch_control: bool


VOICES = {
    v.name: v
    for v in (
        Voice("flite_kal16", "flite", "kal16", "flite", True, True),
        Voice("flite_awb", "flite", "awb", "flite", False, True),
        Voice("flite_rms", "flite", "rms", "flite", False, True),
        Voice("flite_slt", "flite", "slt", "flite", False, True),
        Voice("festival_kal", "festival", "kal_diphone", "festvox-kallpc16k", True, True),
        Voice("festival_ked", "festival", "ked_diphone", "festvox-kdlpc16k", True, True),
        Voice("festival_slt_hts", "festival", "cmu_us_slt_arctic_hts", "festvox-us-slt-hts", False, False),
    )
}


@dataclass
class Rendering:
    wav_path: Path
    phones: list[TimedToken]
    words: list[TimedToken]


@lru_cache(maxsize=None)
def _flite_voices() -> frozenset[str]:
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    return frozenset(out.split(":", 1)[-1].split())


def check_voices(voice_names) -> None:
    """Raises :class:`CorpusError` naming each missing engine or voice and the Debian package to install."""
    names = sorted(set(voice_names))
    missing = []
    for engine in sorted({VOICES[n].engine for n in names} | {"sox"}):
        if shutil.which(engine) is None:
            users = ", ".join(n for n in names if VOICES[n].engine == engine)
            missing.append(
                f"{engine} (voices {users}): Debian package '{engine}'"
                if users
                else f"{engine}: Debian package '{engine}'"
            )
    for name in names:
        voice = VOICES[name]
        if shutil.which(voice.engine) is None:
            continue
        if voice.engine == "flite" and voice.engine_voice not in _flite_voices():
            missing.append(f"flite voice '{voice.engine_voice}': Debian package '{voice.debian_package}'")
        elif voice.engine == "festival" and not any(
            any(d.glob(f"*/{voice.engine_voice}")) for d in FESTIVAL_VOICE_DIRS if d.is_dir()
        ):
            missing.append(f"festival voice '{voice.engine_voice}': Debian package '{voice.debian_package}'")
    if missing:
        raise CorpusError(
            "cannot synthesise the embedded corpus, missing:\n  "
            + "\n  ".join(missing)
            + "\nInstall them with: bash tools/install.sh"
        )


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusError(
            f"{what}: '{' '.join(cmd[:3])} ...' failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
        )
    return proc.stdout


def _phones_from_ends(names_and_ends) -> list[TimedToken]:
    phones, start = [], 0.0
    for name, end in names_and_ends:
        phones.append(TimedToken(start, max(0.0, end - start), name))
        start = end
    return phones


def words_of(text: str) -> list[str]:
    """The words of a sentence as the engines see them: lower case, punctuation stripped."""
    cleaned = "".join(c if c.isalpha() or c == "'" else " " for c in text.lower())
    return cleaned.split()


def _align_words(phones: list[TimedToken], word_phones: list[list[str]], words: list[str]) -> list[TimedToken]:
    """Word timings from phone timings, given each word's phones as the engine says it in isolation.

    In context an engine may reduce or change a phone, so the two phone strings are aligned; a phone
    with no counterpart joins the word before it.
    """
    speech = [p for p in phones if p.token != SILENCE]
    reference = [(w, ph) for w, phs in enumerate(word_phones) for ph in phs]
    owner = [-1] * len(speech)
    matcher = difflib.SequenceMatcher(None, [p.token for p in speech], [ph for _, ph in reference], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for k, i in enumerate(range(i1, i2)):
                j = j1 + min(k * max(j2 - j1, 1) // max(i2 - i1, 1), max(j2 - j1 - 1, 0))
                owner[i] = reference[j][0] if j2 > j1 else -1
    for i in range(len(owner)):
        if owner[i] < 0:
            owner[i] = owner[i - 1] if i > 0 else 0
    spans: dict[int, list[TimedToken]] = {}
    for phone, w in zip(speech, owner, strict=False):
        spans.setdefault(w, []).append(phone)
    return [
        TimedToken(spans[w][0].start, spans[w][-1].end - spans[w][0].start, words[w])
        for w in sorted(spans)
        if w < len(words)
    ]


def _synthesize_flite(voice: Voice, text: str, out: Path, f0_mean: float | None, stretch: float) -> Rendering:
    cmd = ["flite", "-voice", voice.engine_voice, "--setf", f"duration_stretch={stretch}"]
    if f0_mean is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0_mean}"]
    stdout = _run(cmd + ["-psdur", "-t", text, "-o", str(out)], f"flite voice {voice.engine_voice}")
    ends = []
    for item in stdout.split():
        name, _, end = item.rpartition(":")
        ends.append((name, float(end)))
    phones = _phones_from_ends(ends)
    # Each word's phones: one isolated word per utterance ("w1. w2. ..."), utterances split by pauses.
    words = words_of(text)
    isolated = _run(
        ["flite", "-voice", voice.engine_voice, "-ps", "-t", ". ".join(words) + ".", "-o", "none"],
        f"flite voice {voice.engine_voice}",
    )
    groups = [g.split() for g in " ".join(isolated.split()).split(SILENCE) if g.strip()]
    word_timings = _align_words(phones, groups, words) if len(groups) == len(words) else []
    return Rendering(out, phones, word_timings)


FESTIVAL_SCRIPT = """\
(voice_{voice})
{f0}
(Parameter.set 'Duration_Stretch {stretch})
(set! utt1 (utt.synth (eval (list 'Utterance 'Text "{text}"))))
(utt.save.wave utt1 "{wav}" 'riff)
(set! fd (fopen "{lab}" "w"))
(mapcar (lambda (seg) (format fd "P %s %f\\n" (item.name seg) (item.feat seg "end")))
  (utt.relation.items utt1 'Segment))
(mapcar (lambda (word)
  (format fd "W %s %f %f\\n" (item.name word)
    (item.feat word "R:SylStructure.daughter1.daughter1.segment_start")
    (item.feat word "R:SylStructure.daughtern.daughtern.end")))
  (utt.relation.items utt1 'Word))
(fclose fd)
"""


def _synthesize_festival(voice: Voice, text: str, out: Path, f0_mean: float | None, stretch: float) -> Rendering:
    f0 = ""
    if f0_mean is not None:
        f0 = (
            f"(set! int_lr_params (list (list 'target_f0_mean {f0_mean}) (list 'target_f0_std {f0_mean / 7:.1f})"
            " (list 'model_f0_mean 170) (list 'model_f0_std 34)))"
        )
    lab, script = out.with_suffix(".lab"), out.with_suffix(".scm")
    escaped = text.replace("\\", " ").replace('"', " ")
    script.write_text(
        FESTIVAL_SCRIPT.format(voice=voice.engine_voice, f0=f0, stretch=stretch, text=escaped, wav=out, lab=lab)
    )
    _run(["festival", "-b", str(script)], f"festival voice {voice.engine_voice}")
    ends, words = [], []
    for line in lab.read_text().splitlines():
        kind, name, *times = line.split()
        if kind == "P":
            ends.append((name, float(times[0])))
        else:
            start, end = float(times[0]), float(times[1])
            words.append(TimedToken(start, end - start, name.lower()))
    return Rendering(out, _phones_from_ends(ends), words)


def synthesize(voice_name: str, text: str, out: Path, f0_mean: float | None = None, stretch: float = 1.0) -> Rendering:
    """Renders ``text`` with a base voice into ``out`` (the engine's own sample rate).

    ``f0_mean`` (Hz) is honoured only by voices with ``f0_control``; ``stretch`` only by voices with
    ``stretch_control`` (the caller applies it with sox otherwise).
    """
    voice = VOICES[voice_name]
    f0_mean = f0_mean if voice.f0_control else None
    stretch = stretch if voice.stretch_control else 1.0
    if voice.engine == "flite":
        return _synthesize_flite(voice, text, out, f0_mean, stretch)
    return _synthesize_festival(voice, text, out, f0_mean, stretch)
