"""Ranking a poem's candidates with a right-to-left reader: an MMI-style rerank.

Generation keeps, of each poem's ``best_of`` samples or ``beam`` hypotheses, the one the forward
model scores best (:func:`poetry_lm.decoding.loop.best`). The forward model judges each
character by what came before it only, so nothing checks that the first lines fit the last. A
backward model (the same architecture trained with ``--direction backward``: poems read right to
left) judges each character by what comes after it. The rerank adds the two, as the MMI-bidi
rerank of Li et al. (2016, "A Diversity-Promoting Objective Function for Neural Conversation
Models") adds a model that reads the other way.

A candidate y, written as N tokens (its characters and marks, then the end token), is ranked by

    F(y) + λ · B(y)

    F(y) = 1/N  · Σ_t [log p_fwd(y_t | y_<t) − penalty_t]     generation's score (``.score``)
    B(y) = 1/N' · Σ_t  log p_bwd(z_t | z_<t)                   the reader's, set on ``.backward``

where z is the poem's text reversed, then the end token (N' tokens: N' = N unless ``max_len`` cut
the poem back to a complete verse), penalty_t the repetition penalties generation charged, and
λ = ``PoemRequest.rerank_weight``. Both terms are means per token, so poems of different
lengths (free verse) compare fairly. Ties go to the first candidate in row order, as in plain
ranking; with λ = 0 the rerank keeps what plain ranking keeps.

All candidates of a batch are read in one batched pass of the reader's sequence path
(:func:`poetry_lm.evaluation.perplexity.poem_nll`, padding excluded); a poem with one candidate
needs none.
"""

from __future__ import annotations

import dataclasses

from poetry_lm.decoding.loop import GeneratedPoem, best
from poetry_lm.evaluation.perplexity import poem_nll
from poetry_lm.model.lm import PoetryLM
from poetry_lm.text.vocab import CharTable


def check_reader(reader: PoetryLM, reader_table: CharTable, table: CharTable, name: str) -> None:
    """Raise ValueError (one sentence naming the checkpoint ``name``) unless ``reader`` reads
    right to left with the same vocabulary as the forward model's ``table``."""
    if reader.config.direction != "backward":
        raise ValueError(
            f"{name} reads poems left to right; the rerank needs a model trained with "
            "--direction backward"
        )
    if reader_table.tokens != table.tokens:
        raise ValueError(
            f"{name} was trained on another vocabulary than the forward model; train it on the "
            "same corpus with the same --min-freq"
        )


def backward_scores(reader: PoetryLM, table: CharTable, texts: list[str]) -> list[float]:
    """B(y) of each text (see the module doc): its mean log-probability per token read right to
    left, all texts in one batch."""
    nll, tokens = poem_nll(reader, table, texts)  # (P,), (P,)
    return (-nll.double() / tokens.clamp(min=1)).tolist()


def rerank(
    found: list[list[GeneratedPoem]], reader: PoetryLM | None, table: CharTable, weight: float
) -> list[GeneratedPoem]:
    """Of each poem's candidates (as :func:`~poetry_lm.decoding.loop.candidates` returns
    them), the one of the best F + λ·B, with ``backward`` set to its B; without a ``reader``, or
    with one candidate per poem, plain ranking (no backward pass)."""
    if reader is None or all(len(rows) == 1 for rows in found):
        return [best(rows) for rows in found]
    scores = iter(backward_scores(reader, table, [poem.text for rows in found for poem in rows]))
    picked = []
    for rows in found:
        scored = [dataclasses.replace(poem, backward=next(scores)) for poem in rows]
        picked.append(max(scored, key=lambda poem: poem.score + weight * poem.backward))
    return picked
