"""Evaluation: perplexity by its one definition, per-character surprisal."""
