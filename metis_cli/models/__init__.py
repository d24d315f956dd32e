"""The networks: the masked generative transformer, the stage-1 model, S2A, and the masking objective."""
