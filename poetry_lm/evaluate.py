"""Perplexity, with one definition used everywhere.

perplexity = exp( total NLL / N ), where N counts every token after the begin token of each
poem (characters, punctuation and the end token), each exactly once; padding is never counted.
Poems are scored whole, each from a zero state, never as overlapping windows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .data import poem_batches
from .model import PoetryLM
from .vocab import CharTable


@dataclass
class PerplexityReport:
    perplexity: float
    nll: float          # summed negative log-likelihood, nats
    tokens: int         # scored tokens
    unk_tokens: int     # scored tokens that are <unk> (characters outside the vocabulary)
    poems: int

    @property
    def unk_rate(self) -> float:
        return self.unk_tokens / max(self.tokens, 1)


@torch.inference_mode()
def perplexity(model: PoetryLM, table: CharTable, poems: list[str], max_tokens: int = 16384) -> PerplexityReport:
    was_training = model.training
    model.eval()
    encoded = [table.encode_poem(p) for p in poems]
    nll, tokens = 0.0, 0
    device = model.embedding.weight.device
    for batch in poem_batches(encoded, table.pad, max_tokens):
        batch_nll, batch_tokens, _ = model.sequence_nll(batch.to(device), table.pad)
        nll += float(batch_nll)
        tokens += batch_tokens
    model.train(was_training)
    unk = sum(ids[1:].count(table.unk) for ids in encoded)
    return PerplexityReport(math.exp(nll / max(tokens, 1)), nll, tokens, unk, len(poems))
