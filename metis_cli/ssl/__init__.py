"""Stage 1: SSL features (weight-free MFCC or a local transformers SSL model), normalised and sharded."""
