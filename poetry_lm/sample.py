"""Writing poems: batched decoding from the language model, one poem per start text, under the
rules of :mod:`poetry_lm.forms` (forms, acrostics, rhyme, tones, no-repeat).

Every poem is decoded as ``width`` rows of one batch (one forward pass per step for all):
``best_of`` independent samples, or the ``beam`` hypotheses of a beam search. The kept row is
the one with the best length-normalised log-probability: the model's own (unmasked)
log-probability of each token written, the end token included, averaged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .forms import VERSE_ENDS, Constraints, Rules
from .model import PoetryLM
from .vocab import SPECIALS, CharTable


@dataclass
class SampleOptions:
    temperature: float = 1.0
    top_k: int = 0          # keep only the k most likely characters (0: all)
    top_p: float = 1.0      # keep the smallest set whose probability reaches p (1: all)
    greedy: bool = False    # always take the most likely character
    max_len: int = 128      # characters per poem without a form, the start text included
    best_of: int = 1        # candidates sampled per poem; the likeliest is kept
    beam: int = 0           # beam search of this width instead of sampling (0: sample)
    prime: str = ""         # read before each poem as earlier verses of it, never printed


@dataclass
class Poem:
    text: str
    logprobs: list[float]   # the model's log-probability of each character of text
    score: float            # mean log-probability of all tokens written, the end included
    rhyme: list[str]        # the rhyme groups its rhyming characters share (with rhyme on)
    backoffs: list[str]     # where a constraint was dropped for want of candidates

    @property
    def lines(self) -> list[str]:
        return verses(self.text)


class UnknownCharacterError(ValueError):
    pass


def check_start(table: CharTable, text: str, what: str = "start") -> None:
    """A text the model cannot read is an error naming the first offending character."""
    for ch in text:
        if ch not in table.index or ch in SPECIALS:
            raise UnknownCharacterError(f"the model does not know the character {ch!r}; choose another {what}")


def filter_logits(logits: torch.Tensor, opts: SampleOptions) -> torch.Tensor:
    """logits (B, V) → logits with everything outside top-k / top-p set to -inf."""
    if opts.top_k:
        kth = logits.topk(min(opts.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p < 1.0:
        probs = logits.softmax(-1)
        # values only: np.sort is many times faster than torch.sort, which also builds indices
        ranked = torch.from_numpy(-np.sort(-probs.numpy(), axis=-1))                 # (B, V), descending
        # keep up to the first token at which the mass reaches p
        kept = torch.searchsorted(ranked.cumsum(-1), torch.full((len(ranked), 1), opts.top_p)) + 1
        kept = kept.clamp(max=ranked.shape[1])
        logits = logits.masked_fill(probs < ranked.gather(-1, kept - 1), float("-inf"))
    return logits


class Stepper:
    """Advance the model one token at a time, keeping the state (inference only, no dropout).

    No (V, G·H) table of first-layer input gates is precomputed: building it costs one
    V×E×G·H GEMM (~70 ms at V=6868, E=256, H=512 on one core), more than the per-step input
    GEMMs of a whole batch of poems.
    """

    def __init__(self, model: PoetryLM):
        self.model = model
        self.layers = model.rnn.layers

    def read(self, prefixes: list[list[int]], pad: int) -> tuple[torch.Tensor, list]:
        """Read prefixes of any lengths as one batch, padded in front (padding resets the
        state, so it changes nothing) → log-probabilities of the next token (B, V), state."""
        length = max(len(p) for p in prefixes)
        tokens = torch.tensor([[pad] * (length - len(p)) + p for p in prefixes]).T    # (T, B)
        keep = (tokens != pad).unsqueeze(-1).to(self.model.embedding.weight.dtype)   # (T, B, 1)
        hidden, state = self.model(tokens, keep=keep)
        return self.model.log_probs(hidden[-1]), state

    def __call__(self, tokens: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """tokens (B,) and state → log-probabilities of the next token (B, V), new state."""
        h = self.model.embedding(tokens)                                # (B, E)
        new_state = []
        for k, layer in enumerate(self.layers):
            layer_state = layer.cell(layer.input_gates(h), state[k])
            new_state.append(layer_state)
            h = layer_state[0]                                          # (B, H)
        return self.model.log_probs(h), new_state


def sample_step(logp: torch.Tensor, opts: SampleOptions, generator: torch.Generator | None) -> torch.Tensor:
    """Masked log-probabilities (B, V) → one token per row (B,)."""
    if opts.greedy:
        return logp.argmax(-1)
    cdf = filter_logits(logp / opts.temperature, opts).softmax(-1).cumsum(-1)
    total = cdf[:, -1:].contiguous()
    u = torch.rand(len(cdf), 1, generator=generator) * total
    # inverse CDF, far cheaper than multinomial; a u rounded up to the total takes the last possible token
    return torch.minimum(torch.searchsorted(cdf, u, right=True), torch.searchsorted(cdf, total)).squeeze(1)


def beam_step(beams: torch.Tensor, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (P, N) of N hypotheses per poem, masked log-probabilities (P·N, V) → next tokens
    (P·N,), the row each new hypothesis extends (P·N,), and the new scores (P, N)."""
    P, N = beams.shape
    V = logp.shape[1]
    top, flat = (beams.reshape(-1, 1) + logp).reshape(P, N * V).topk(N, dim=1)
    flat = torch.where(top.isinf(), flat[:, :1], flat)  # too few candidates: copy the best, its score kept at -inf
    rows = (torch.arange(P)[:, None] * N + flat // V).flatten()
    return (flat % V).flatten(), rows, top


@torch.inference_mode()
def generate(model: PoetryLM, table: CharTable, starts: list[str], opts: SampleOptions,
             generator: torch.Generator | None = None, cons: Constraints = Constraints()) -> list[Poem]:
    """One poem per start text (``""`` lets the model choose its first character), decoded as one batch.

    Without a form, writing stops at the end token or ``opts.max_len`` characters; padding,
    begin and ``<unk>`` can never be drawn.
    """
    for text, what in [*((s, "start") for s in starts), (cons.acrostic, "acrostic"), (opts.prime, "prime")]:
        check_start(table, text, what)
    if cons.acrostic and any(starts):
        raise ValueError("an acrostic sets the first character of every line; give no start text")
    model.eval()
    width = opts.beam or opts.best_of
    rows = [s for s in starts for _ in range(width)]
    rules = Rules(table, cons, [table.encode(s) for s in rows], opts.max_len)
    prime = opts.prime if not opts.prime or opts.prime[-1] in VERSE_ENDS else opts.prime + "。"
    step = Stepper(model)
    logp, state = step.read([[table.bos, *table.encode(prime)]] * len(rows), table.pad)
    beams = torch.zeros(len(starts), width)                              # beam search: one hypothesis to start
    beams[:, 1:] = float("-inf")
    tokens = torch.zeros(len(rows), 0, dtype=torch.long)                 # every row's tokens so far
    chosen, live = torch.zeros(len(rows), 0), torch.zeros(len(rows), 0, dtype=torch.bool)
    while not rules.done.all():
        mask = rules.allowed()
        logp = torch.where(mask, logp, float("-inf"))
        if opts.beam:  # a finished hypothesis may only repeat the end token, at no cost to its score
            next_ids, index, beams = beam_step(beams, logp.masked_fill(mask & rules.done[:, None], 0.0))
            rules.select(index)
            logp, tokens, chosen, live = logp[index], tokens[index], chosen[index], live[index]
            state = [tuple(s[index] for s in layer) for layer in state]
        else:
            next_ids = sample_step(logp, opts, generator)
        tokens = torch.cat([tokens, next_ids[:, None]], 1)
        chosen = torch.cat([chosen, logp.gather(1, next_ids[:, None])], 1)
        live = torch.cat([live, ~rules.done[:, None]], 1)
        rules.advance(next_ids)
        logp, state = step(next_ids, state)
    poems = []
    for first in range(0, len(rows), width):                             # keep each poem's likeliest row
        best = max(range(first, first + width), key=lambda b: float(chosen[b][live[b]].mean()))
        chars = live[best] & (tokens[best] != table.eos)
        poems.append(Poem(table.decode(tokens[best][chars].tolist()), chosen[best][chars].tolist(),
                          float(chosen[best][live[best]].mean()), rules.rhyme_of(best), rules.backoffs[best]))
    return poems


def verses(poem: str) -> list[str]:
    """Split a poem after each verse-ending mark: one verse per line."""
    lines, current = [], ""
    for ch in poem:
        current += ch
        if ch in VERSE_ENDS:
            lines.append(current)
            current = ""
    return lines + [current] if current else lines
