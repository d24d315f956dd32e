"""Stage 3: the acoustic codec (model, training, encoding, decoding)."""
