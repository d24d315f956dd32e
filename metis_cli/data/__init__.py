"""Data dirs (Kaldi style), array stores, shards, batching, decode dirs and their checks."""
