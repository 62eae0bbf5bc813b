"""Text: the corpus and its split, the vocabulary, batching for training."""
