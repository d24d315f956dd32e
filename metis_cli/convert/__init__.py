"""Published checkpoints -> this toolkit's experiment dirs (``metis convert``)."""
