"""Corpora: the embedded synthetic corpus (``mini``) and the preparation of public ones into data dirs."""
