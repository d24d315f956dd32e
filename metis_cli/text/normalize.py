"""English text normalisation before phonemisation: abbreviations, currency, percentages, ordinals,
decimals and integers spelled out, symbols named, whitespace collapsed. Punctuation is kept (the
phonemisers turn it into pauses or drop it)."""

from __future__ import annotations

import re

ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "dr": "doctor",
    "prof": "professor",
    "st": "saint",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "etc": "et cetera",
    "e.g": "for example",
    "i.e": "that is",
    "approx": "approximately",
    "no": "number",
    "mt": "mount",
    "ft": "feet",
    "km": "kilometres",
    "kg": "kilograms",
}
SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "#": " number ", "°": " degrees "}
_ABBREV = re.compile(
    r"\b(" + "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True)) + r")\.", re.IGNORECASE
)
_CURRENCY = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER = re.compile(r"\b\d[\d,]*\b")
_CURRENCY_NAMES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}


def _engine():
    import inflect

    return inflect.engine()


def _words(engine, number: str) -> str:
    value = int(number.replace(",", ""))
    if 1100 <= value <= 2099 and "," not in number and value % 100 and len(number) == 4:  # years read in pairs
        return f"{engine.number_to_words(value // 100)} {engine.number_to_words(value % 100, zero='oh')}"
    return engine.number_to_words(value, andword="").replace(",", "")


def normalize_text(text: str) -> str:
    engine = _engine()
    text = _ABBREV.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)

    def currency(m):
        unit, sub = _CURRENCY_NAMES[m.group(1)]
        whole = int(m.group(2).replace(",", ""))
        out = f"{_words(engine, m.group(2))} {engine.plural(unit, whole)}"
        if m.group(3) and int(m.group(3)):
            cents = int(m.group(3).ljust(2, "0"))
            out += f" and {engine.number_to_words(cents)} {engine.plural(sub, cents)}"
        return out

    text = _CURRENCY.sub(currency, text)
    text = _PERCENT.sub(lambda m: f"{m.group(1)} percent", text)
    text = _ORDINAL.sub(lambda m: engine.number_to_words(engine.ordinal(int(m.group(1)))), text)
    text = _DECIMAL.sub(
        lambda m: f"{_words(engine, m.group(1))} point {' '.join(engine.number_to_words(d) for d in m.group(2))}", text
    )
    text = _NUMBER.sub(lambda m: _words(engine, m.group(0)), text)
    for symbol, name in SYMBOLS.items():
        text = text.replace(symbol, name)
    text = text.replace("-", " ")
    return re.sub(r"\s+", " ", text).strip()
