"""Scoring of decode dirs: metrics, model-based scorers, summaries, RESULTS.md and HTML reports."""
