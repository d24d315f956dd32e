"""Shared training machinery (Trainer, configs, token batches) and the stage-1 and S2A training tasks."""
