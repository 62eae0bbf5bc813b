"""How each next token is chosen: the one seam between the decoding loop
(:mod:`poetry_lm.decoding.loop`) and the ways of choosing, sampling and the beam.

A :class:`Strategy` gets, at each step, every row's scores (the model's log-probabilities less
the penalties, plus the keyword bonus), the tokens the rules allow and the rows already done,
and returns a token per row, and the rows it reorders (the beam keeps its best hypotheses).
A new way of choosing, or a new sampling option (read from
:class:`~poetry_lm.request.Sampling`), is a change to this module only.

**Sampling** draws each row's token by inverse CDF from its own stream of uniform numbers:
row j of a poem of seed s draws from seed s + j, so a poem never depends on the rows beside it,
and best-of K's candidates are the poems of seeds s … s + K - 1 where the first line's rhyme is
given (left open, all K share the draw of seed s: ``loop.first_line_rhymes``).

**Stochastic beam search** (Kool, van Hoof & Welling 2019, "Stochastic Beams and Where to Find
Them"): each hypothesis carries a Gumbel-perturbed score, and its children's perturbed scores
are Gumbel-top-k draws conditioned on not exceeding their parent's, so the ``beam`` kept
hypotheses are samples without replacement from the (tempered, penalised, masked) model. Each
seed draws other samples; greedy, it is the plain beam search.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from poetry_lm.request import Sampling


class Strategy(Protocol):
    """Chooses every row's next token; ``width`` rows per poem."""

    width: int

    def choose(
        self, t: int, scores: np.ndarray, allowed: np.ndarray, done: np.ndarray, forced: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Step ``t``: scores (R, V), allowed (R, V) bool, done (R,) bool, and ``forced``
        (every row allows one token) → the tokens (R,), and the row each row now continues
        (R,), or None where the rows keep their order."""


def strategy_for(sampling: Sampling, width: int, seeds: list[int], steps: int) -> Strategy:
    """The strategy ``sampling`` asks for, for poems of ``seeds``, ``width`` rows each, for at
    most ``steps`` steps."""
    if sampling.beam:
        return BeamStrategy(sampling, seeds)
    return SampleStrategy(sampling, width, seeds, steps)


class SampleStrategy:
    """Each row samples its own token (or, greedy, takes the likeliest)."""

    def __init__(self, sampling: Sampling, width: int, seeds: list[int], steps: int):
        self.sampling, self.width = sampling, width
        streams = [torch.Generator().manual_seed(seed + j) for seed in seeds for j in range(width)]
        # (steps, R): row b's uniform draw at step t
        self.uniforms = np.stack([torch.rand(steps, generator=g).numpy() for g in streams], 1)

    def choose(self, t, scores, allowed, done, forced):
        return sample_step(scores, allowed, self.uniforms[t], self.sampling, forced), None


def sample_step(
    logp: np.ndarray, mask: np.ndarray, u: np.ndarray, sampling: Sampling, forced: bool = False
) -> np.ndarray:
    """Log-probabilities (B, V), the tokens allowed (B, V) and uniform draws (B,) → one token per
    row (B,). ``forced``: every row allows one token, so none is drawn. In numpy: on rows of a
    few thousand numbers its calls cost a fraction of torch's."""
    masked = np.where(mask, logp, np.float32(-np.inf))  # (B, V)
    if forced or sampling.is_greedy:
        return masked.argmax(1)
    return np.array([sample_row(row, u_b, sampling) for row, u_b in zip(masked, u)])


def sample_row(logp: np.ndarray, u: float, sampling: Sampling) -> int:
    """One row's masked log-probabilities (V,) and a uniform draw → a token, drawn by inverse CDF
    at the temperature from the k likeliest (top-k), cut to the fewest whose mass reaches p of
    theirs (top-p); a tie at the cut is kept."""
    V = len(logp)
    top_p = sampling.top_p
    # (V,) unnormalised probabilities, masked 0
    weight = np.exp((logp - logp.max()) * (1 / sampling.temperature))
    k = min(sampling.top_k or V, V)
    if k == V and top_p == 1:
        kept = np.flatnonzero(weight)  # token ids, in vocabulary order
    else:
        total = weight.sum()
        if k < V:  # the k likeliest, ties at the cut included
            pool = np.flatnonzero(weight >= np.partition(weight, V - k)[V - k])
        else:  # lighter than (1 - p)/V of the mass: all such tokens fall short of 1 - p together
            pool = np.flatnonzero(weight >= (1 - top_p) / V * total)
        ranked = np.sort(weight[pool])[::-1]  # the pool's weights, descending
        mass = np.cumsum(ranked)
        target = (mass[k - 1] if k < V else total) * top_p  # p of the k likeliest's mass
        last = min(np.searchsorted(mass, target), len(ranked) - 1)  # rank of the least likely kept
        kept = pool[weight[pool] >= ranked[last]]
    cdf = np.cumsum(weight[kept])
    # a u·total rounded up to the total takes the last kept token
    return int(kept[min(np.searchsorted(cdf, u * cdf[-1], "right"), len(kept) - 1)])


class BeamStrategy:
    """A (stochastic) beam of ``sampling.beam`` hypotheses per poem; a poem's noise comes from
    its seed."""

    def __init__(self, sampling: Sampling, seeds: list[int]):
        self.sampling, self.width = sampling, sampling.beam
        self.noise = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.keys = np.full((len(seeds), self.width), -np.inf, dtype=np.float32)
        self.keys[:, 0] = 0  # one hypothesis to begin with
        self.sums = self.keys.copy()

    def choose(self, t, scores, allowed, done, forced):
        # a finished hypothesis may only repeat the end token, at no cost
        scored = np.where(allowed, scores, np.float32(-np.inf))
        scored[done] = np.where(allowed[done], 0, -np.inf)
        gumbel = None
        if not self.sampling.is_greedy:  # tempered, then Gumbel-perturbed
            scored = log_softmax(scored / self.sampling.temperature)
            V = scored.shape[1]
            gumbel = np.concatenate(
                [
                    -np.log(-np.log(torch.rand(self.width, V, generator=g).numpy() + 1e-20) + 1e-20)
                    for g in self.noise
                ]
            )
        tokens, rows, self.keys, self.sums = beam_step(self.keys, self.sums, scored, gumbel)
        return tokens, rows


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Along the last axis; rows of -inf stay -inf."""
    top = x.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    with np.errstate(divide="ignore"):
        return x - top - np.log(np.exp(x - top).sum(-1, keepdims=True))


def shift_gumbel(parent: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """Children's Gumbel scores conditioned on their maximum being their parent's (Kool et al.
    2019, appendix B, in its numerically stable form): parent (R,), perturbed (R, V) → (R, V)."""
    top = perturbed.max(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = parent[:, None] - perturbed + np.log1p(-np.exp(perturbed - top))
        out = parent[:, None] - np.maximum(u, 0) - np.log1p(np.exp(-np.abs(u)))
    dead = ~np.isfinite(parent)[:, None] | ~np.isfinite(perturbed)
    return np.where(dead, -np.inf, out).astype(np.float32)


def beam_step(
    keys: np.ndarray, sums: np.ndarray, logp: np.ndarray, gumbel: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step of (stochastic) beam search for P poems of N hypotheses.

    keys (P, N): what the hypotheses are ranked by (their perturbed scores; without noise their
    sums); sums (P, N): their log-probabilities so far; logp (P·N, V): masked log-probabilities
    of the next token; gumbel (P·N, V) standard Gumbel noise, or None for the plain beam search
    → next tokens (P·N,), the row each new hypothesis extends (P·N,), the new keys and sums.
    """
    P, N = sums.shape
    V = logp.shape[1]
    children = sums.reshape(-1, 1) + logp  # (P·N, V)
    if gumbel is None:
        child_keys = children
    else:
        child_keys = shift_gumbel(keys.reshape(-1), children + gumbel)
    flat_keys = child_keys.reshape(P, N * V)
    best = np.argsort(-flat_keys, axis=1, kind="stable")[:, :N]  # (P, N)
    top = np.take_along_axis(flat_keys, best, 1)
    best = np.where(np.isinf(top), best[:, :1], best)  # too few candidates: copy the best
    rows = (np.arange(P)[:, None] * N + best // V).reshape(-1)
    tokens = (best % V).reshape(-1)
    new_sums = children[rows, tokens].reshape(P, N)
    new_keys = np.where(np.isinf(top), -np.inf, top).astype(np.float32)
    return tokens, rows, new_keys, np.where(np.isinf(top), -np.inf, new_sums)
