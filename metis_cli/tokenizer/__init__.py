"""Stage 2: the SSL tokenizer (k-means over SSL features), token assignment and its quality report."""
