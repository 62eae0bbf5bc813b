"""Writing poems: batched decoding from the language model, one poem per start text, under the
rules of :mod:`poetry_lm.prosody.forms` (forms, acrostics, rhyme, tones, no-repeat).

Every poem is decoded as ``width`` rows of one batch (one forward pass per step for all):
``best_of`` independent samples, or the ``beam`` hypotheses of a beam search. The kept row is
the one with the best length-normalised log-probability: the model's own (unmasked)
log-probability of each token written, the end token included, averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from poetry_lm.decoding.stepper import Stepper
from poetry_lm.model.lm import PoetryLM
from poetry_lm.prosody.forms import VERSE_ENDS, Constraints, Rules
from poetry_lm.settings import SettingError, setting
from poetry_lm.text.vocab import SPECIALS, CharTable


@dataclass
class SampleOptions:
    """How each next character is chosen; the defaults are those of ``poetry-lm generate``.

    Raises ``SettingError`` (a ``ValueError``) for an option out of range or at odds with another.
    """

    temperature: float = setting(0.8, "Divides the log-probabilities: below 1 is more cautious.")
    top_k: int = setting(0, "Keep only the k most likely characters (0 keeps every character).")
    top_p: float = setting(
        0.95, "Keep the fewest likeliest characters whose probability reaches p (1 keeps all)."
    )
    greedy: bool = setting(False, "Always take the most likely character.")
    max_len: int = setting(128, "Most characters per poem without a form, the start text included.")
    best_of: int = setting(
        1, "Sample K candidates per poem in one batch; keep the likeliest (per token)."
    )
    beam: int = setting(0, "Beam search of this width instead of sampling (0: sample).")
    prime: str = setting("", "Read this first, as earlier verses of the poem, without printing it.")

    def __post_init__(self):
        if self.beam and self.best_of > 1:
            raise SettingError("choose {beam} or {best_of}, not both")
        if not self.temperature > 0:
            raise SettingError(f"{{temperature}} must be above 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SettingError(f"{{top_p}} must be in (0, 1], not {self.top_p}")


@dataclass
class GeneratedPoem:
    text: str
    logprobs: list[float]  # the model's log-probability of each character of text
    score: float  # mean log-probability of all tokens written, the end included
    rhyme: list[str]  # the rhyme groups its rhyming characters share (with rhyme on)
    backoffs: list[str]  # where a constraint was dropped for want of candidates

    @property
    def lines(self) -> list[str]:
        return verses(self.text)


class UnknownCharacterError(ValueError):
    pass


def check_start(table: CharTable, text: str, what: str = "start") -> None:
    """A text the model cannot read is an error naming the first offending character."""
    for ch in text:
        if ch not in table.index or ch in SPECIALS:
            raise UnknownCharacterError(
                f"the model does not know the character {ch!r}; choose another {what}"
            )


def sample_row(logp: np.ndarray, u: float, opts: SampleOptions) -> int:
    """One row's masked log-probabilities (V,) and a uniform draw → a token, drawn by inverse CDF
    at the temperature from the k likeliest (top-k), cut to the fewest whose mass reaches p of
    theirs (top-p); a tie at the cut is kept."""
    V = len(logp)
    # (V,) unnormalised probabilities, masked 0
    weight = np.exp((logp - logp.max()) * (1 / opts.temperature))
    k = min(opts.top_k or V, V)
    if k == V and opts.top_p == 1:
        kept = np.flatnonzero(weight)  # token ids, in vocabulary order
    else:
        total = weight.sum()
        if k < V:  # the k likeliest, ties at the cut included
            pool = np.flatnonzero(weight >= np.partition(weight, V - k)[V - k])
        # lighter than (1 - p)/V of the mass: all such tokens together fall short of 1 - p,
        # so none of them is kept
        else:
            pool = np.flatnonzero(weight >= (1 - opts.top_p) / V * total)
        ranked = np.sort(weight[pool])[::-1]  # the pool's weights, descending
        mass = np.cumsum(ranked)
        target = (mass[k - 1] if k < V else total) * opts.top_p  # p of the k likeliest's mass
        last = min(np.searchsorted(mass, target), len(ranked) - 1)  # rank of the least likely kept
        kept = pool[weight[pool] >= ranked[last]]
    cdf = np.cumsum(weight[kept])
    # a u·total rounded up to the total takes the last kept token
    return int(kept[min(np.searchsorted(cdf, u * cdf[-1], "right"), len(kept) - 1)])


def sample_step(
    logp: torch.Tensor, mask: torch.Tensor, u: np.ndarray, opts: SampleOptions, forced: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (B, V), the tokens allowed (B, V) and uniform draws (B,) → one token per
    row (B,) and its log-probability (B,). ``forced``: every row allows one token, so none is
    drawn. In numpy: on rows of a few thousand numbers its calls cost a fraction of torch's."""
    masked = np.where(mask.numpy(), logp.numpy(), np.float32(-np.inf))  # (B, V)
    if forced or opts.greedy:
        ids = masked.argmax(1)
    else:
        ids = np.array([sample_row(row, u_b, opts) for row, u_b in zip(masked, u)])
    return torch.from_numpy(ids), torch.from_numpy(masked[np.arange(len(ids)), ids])


def beam_step(
    beams: torch.Tensor, logp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (P, N) of N hypotheses per poem, masked log-probabilities (P·N, V) → next tokens
    (P·N,), the row each new hypothesis extends (P·N,), and the new scores (P, N)."""
    P, N = beams.shape
    V = logp.shape[1]
    top, flat = (beams.reshape(-1, 1) + logp).reshape(P, N * V).topk(N, dim=1)
    # too few candidates: copy the best, its score kept at -inf
    flat = torch.where(top.isinf(), flat[:, :1], flat)
    rows = (torch.arange(P)[:, None] * N + flat // V).flatten()
    return (flat % V).flatten(), rows, top


@torch.inference_mode()
def generate(
    model: PoetryLM,
    table: CharTable,
    starts: list[str],
    opts: SampleOptions,
    generator: torch.Generator | None = None,
    cons: Constraints = Constraints(),
    step: Stepper | None = None,
) -> list[GeneratedPoem]:
    """One poem per start text (``""`` lets the model choose its first character), decoded as
    one batch.

    ``step``: a :class:`Stepper` of ``model``, so that many calls build it once (~0.15 s).

    Without a form, writing stops at the end token or ``opts.max_len`` characters; padding,
    begin and ``<unk>`` can never be drawn.
    """
    for text, what in [
        *((s, "start") for s in starts),
        (cons.acrostic, "acrostic"),
        (opts.prime, "prime"),
    ]:
        check_start(table, text, what)
    if cons.acrostic and any(starts):
        raise ValueError("an acrostic sets the first character of every line; give no start text")
    width = opts.beam or opts.best_of
    rows = [s for s in starts for _ in range(width)]
    rules = Rules(table, cons, [table.encode(s) for s in rows], opts.max_len)
    prime = opts.prime if not opts.prime or opts.prime[-1] in VERSE_ENDS else opts.prime + "。"
    step = step or Stepper(model)
    logp, state = step.read([table.bos, *table.encode(prime)], len(rows))
    beams = torch.zeros(len(starts), width)  # beam search: one hypothesis to start
    beams[:, 1:] = float("-inf")
    # every row's tokens, step by step
    tokens = torch.zeros(len(rows), rules.max_steps, dtype=torch.long)
    chosen = torch.zeros(len(rows), rules.max_steps)  # … their unmasked log-probabilities
    # … written before the row ended
    live = torch.zeros(len(rows), rules.max_steps, dtype=torch.bool)
    uniforms = torch.rand(
        rules.max_steps, len(rows), generator=generator
    ).numpy()  # one draw per row and step
    mask = rules.allowed()
    for t in range(rules.max_steps):
        # a finished hypothesis may only repeat the end token, at no cost to its score
        if opts.beam:
            logp = torch.where(mask, logp, float("-inf"))
            next_ids, index, beams = beam_step(
                beams, logp.masked_fill(mask & rules.done[:, None], 0.0)
            )
            rules.select(index)
            tokens, chosen, live = tokens[index], chosen[index], live[index]
            state = [tuple(s[index] for s in layer) for layer in state]
            logp_written = logp[index, next_ids]
        else:
            next_ids, logp_written = sample_step(logp, mask, uniforms[t], opts, rules.forced)
        tokens[:, t] = next_ids
        chosen[:, t] = logp_written
        live[:, t] = ~rules.done
        rules.advance(next_ids)
        if rules.done.all():  # no model step after the last token
            break
        mask = rules.allowed()
        # a forced mark or end needs only its own log-probability: when it is in the shortlist,
        # skip the other clusters
        logp, state = step(next_ids, state, rules.forced and not mask[:, step.shortlist :].any())
    tokens, chosen, live = tokens[:, : t + 1], chosen[:, : t + 1], live[:, : t + 1]
    poems = []
    for first in range(0, len(rows), width):  # keep each poem's likeliest row
        best = max(range(first, first + width), key=lambda b: float(chosen[b][live[b]].mean()))
        chars = live[best] & (tokens[best] != table.eos)
        poems.append(
            GeneratedPoem(
                table.decode(tokens[best][chars].tolist()),
                chosen[best][chars].tolist(),
                float(chosen[best][live[best]].mean()),
                rules.rhyme_of(best),
                rules.backoffs[best],
            )
        )
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
