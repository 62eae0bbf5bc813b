"""Perplexity, with one definition used everywhere.

perplexity = exp( total NLL / N ), where N counts every token after the begin token of each
poem (characters, punctuation and the end token), each exactly once; padding is never counted.
Poems are scored whole, each from a zero state, never as overlapping windows: by the model's
sequence path, or one token at a time through generation's
:class:`~poetry_lm.model.stepper.Stepper`, which shows what its int8 weights cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from poetry_lm.model.lm import PoetryLM
from poetry_lm.model.stepper import Stepper
from poetry_lm.text.batching import pad_right, poem_batches
from poetry_lm.text.corpus import orient
from poetry_lm.text.vocab import CharTable


@dataclass
class PerplexityReport:
    perplexity: float
    nll: float  # summed negative log-likelihood, nats
    tokens: int  # scored tokens
    unk_tokens: int  # scored tokens that are <unk> (characters outside the vocabulary)
    poems: int

    @property
    def unk_rate(self) -> float:
        return self.unk_tokens / max(self.tokens, 1)


def stepped_nll(step: Stepper, tokens: torch.Tensor, pad: int) -> tuple[float, int]:
    """As ``PoetryLM.sequence_nll`` for poems (T, B) padded at the end, read one token at a time
    (context tokens, a title's, read and never scored)."""
    state, nll, count = None, 0.0, 0
    for current, target in zip(tokens[:-1], tokens[1:]):  # each (B,)
        logp, state = step(current, state, context=True)
        scored = (current != pad) & (target != pad) & (target < logp.shape[1])
        nll -= float(logp[scored].gather(1, target[scored, None]).sum())
        count += int(scored.sum())
    return nll, count


def encode_oriented(
    model: PoetryLM, table: CharTable, poems: list[str], titles: list[str] | None = None
) -> list[list[int]]:
    """Poems encoded as ``model`` reads them: a backward model reads each one right to left."""
    titles = titles or [""] * len(poems)
    direction = model.config.direction
    return [table.encode_poem(orient(p, direction), t) for p, t in zip(poems, titles, strict=True)]


@torch.inference_mode()
def poem_nll(
    model: PoetryLM, table: CharTable, poems: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each poem's summed NLL (P,) and scored tokens (P,) under ``model`` (read in its
    direction), by its sequence path in one batch: the per-poem terms of :func:`perplexity`.

    Float32 sums of one batched pass: a poem's figure alone and in a batch agree to float
    tolerance (the matrix products' blocking may differ with the batch size), not bit for bit.
    """
    batch = pad_right(encode_oriented(model, table, poems), table.pad)
    was_training = model.training
    model.eval()
    nll, tokens = model.row_nll(batch.to(model.embedding.weight.device), table.pad)
    model.train(was_training)
    return nll.cpu(), tokens.cpu()


@torch.inference_mode()
def perplexity(
    model: PoetryLM,
    table: CharTable,
    poems: list[str],
    max_tokens: int = 16384,
    step: Stepper | None = None,
    titles: list[str] | None = None,
) -> PerplexityReport:
    """Perplexity of ``poems`` under ``model``; with ``step`` (a Stepper of the model), as
    generation reads it. With ``titles`` (one per poem, "" for none) each poem is read after its
    title, which is context and never scored, so the definition is unchanged.

    Raises ValueError for titles with a model that reads none.
    """
    was_training = model.training
    model.eval()
    encoded = encode_oriented(model, table, poems, titles)
    nll, tokens = 0.0, 0
    device = model.embedding.weight.device
    for batch in poem_batches(encoded, table.pad, max_tokens):
        if step is None:
            batch_nll, batch_tokens, _ = model.sequence_nll(batch.to(device), table.pad)
        else:
            batch_nll, batch_tokens = stepped_nll(step, batch, table.pad)
        nll += float(batch_nll)
        tokens += batch_tokens
    model.train(was_training)
    unk = sum(ids[1:].count(table.unk) for ids in encoded)  # context tokens are >= V, never unk
    return PerplexityReport(math.exp(nll / max(tokens, 1)), nll, tokens, unk, len(poems))
