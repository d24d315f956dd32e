"""The TTS text front end: normalisation (numbers, abbreviations, symbols), phonemisation (espeak-ng IPA
or ARPAbet), and the phone vocabulary."""
