"""The TTS text front end: normalisation, espeak-ng IPA, offline ARPAbet, the phone vocabulary."""

import pytest

from metis_cli.errors import MetisError
from metis_cli.text.normalize import normalize_text
from metis_cli.text.phonemize import WORD, PhoneVocab, make_phonemizer, text_to_phones


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Dr. Smith paid $3.50 for 2 tickets.", "doctor Smith paid three dollars and fifty cents for two tickets."),
        ("45% of 1,234 & the 21st", "forty five percent of one thousand two hundred thirty four and the twenty first"),
        ("pi is 3.14 since 1984", "pi is three point one four since nineteen eighty four"),
        ("  well-known   text ", "well known text"),
    ],
)
def test_normalisation(text, expected):
    assert normalize_text(text) == expected


def test_espeak_ipa_with_word_boundaries_and_punctuation():
    phones = text_to_phones("Hello world, 2 cats!", make_phonemizer("espeak"))
    assert phones[:5] == ["h", "ə", "l", "ˈ", "oʊ"]  # stress marks are symbols of their own
    assert phones.count(WORD) == 3 and phones[-1] == "!" and "," in phones
    assert "t" in phones and "uː" in "".join(phones)  # the number was read as "two"


def test_numbers_are_read_in_the_text_s_own_language():
    french = text_to_phones("J'ai 3 chats.", make_phonemizer("espeak", "fr"))
    assert "".join(french).replace("|", " ").split()[1] == "tʁwˈa", "trois, not English three"
    assert "θɹˈiː" in "".join(text_to_phones("I have 3 cats.", make_phonemizer("espeak", "en")))


def test_arpabet_offline_with_dictionary_and_model():
    arpabet = make_phonemizer("arpabet")
    assert text_to_phones("Hello world.", arpabet) == ["HH", "AH0", "L", "OW1", WORD, "W", "ER1", "L", "D", "."]
    unknown = text_to_phones("zorblaxian", arpabet)  # not in CMUdict: g2p-en's neural model
    assert unknown and all(p.rstrip("012").isalpha() and p.isupper() for p in unknown)


def test_vocabulary_round_trip_and_unknown_symbols(tmp_path):
    espeak = make_phonemizer("espeak")
    vocab = PhoneVocab.build([text_to_phones("one two three", espeak)])
    vocab.save(tmp_path / "phones.txt")
    again = PhoneVocab.load(tmp_path / "phones.txt")
    assert again.symbols == vocab.symbols and again.symbols[0] == "<pad>"
    phones = text_to_phones("one two three", espeak)
    ids = again.encode(phones)
    assert 0 not in ids and [again.symbols[i] for i in ids] == phones
    with pytest.raises(MetisError, match=r"utterance 'u1': phone symbol\(s\) .* are not in the vocabulary"):
        again.encode(text_to_phones("zebra quiz", espeak), utt_id="u1")


def test_bad_text_and_settings():
    with pytest.raises(MetisError, match="utterance 'u7': empty text"):
        text_to_phones(" ?! ", make_phonemizer("espeak"), utt_id="u7")
    with pytest.raises(MetisError, match="not one of espeak, arpabet"):
        make_phonemizer("festival")
    with pytest.raises(MetisError, match="English only"):
        make_phonemizer("arpabet", "fr")
    with pytest.raises(MetisError, match="language 'xx'"):
        make_phonemizer("espeak", "xx")
