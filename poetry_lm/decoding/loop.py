"""The decoding loop: one poem per start text, each as ``width`` rows of one batch (one forward
pass per step for all), under the rules of :mod:`poetry_lm.prosody.forms` (forms, acrostics,
rhyme without 重韵, tones, no-repeat, no repeated verse). How each token is chosen, sampled or
by the beam, is the :mod:`~poetry_lm.decoding.strategy`'s; what to write, a checked
:class:`~poetry_lm.request.PoemRequest`.

**Repetition penalty.** The model alone repeats characters far more than poets do (a character
3 or more times in over half of its 律诗, against 2–4% of real ones). Before each choice, a
character's log-probability loses ``repetition_penalty`` nats for each time the poem has used
it, and the character at the same place of the previous verse loses ``same_place_penalty``
more: a frequency penalty (as OpenAI's API has one) and its verse-aware twin. The defaults, per
form, are set so that the rates measured by ``python -m poetry_lm decoding-stats`` sit at or
under the train split's (``docs/decoding.md``).

**Ranking.** The kept row is the one with the best mean penalised log-probability: the model's
own (unmasked) log-probability of each token written, the end token included, less the
penalties it paid, averaged. A candidate that repeats itself is ranked down, not up.
:func:`candidates` returns every row, so that another ranking can choose
(:mod:`poetry_lm.decoding.rerank`: forward plus backward log-probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from poetry_lm.decoding.strategy import Strategy, strategy_for
from poetry_lm.model.stepper import Stepper, StepState
from poetry_lm.prosody.forms import CLOSING, VERSE_ENDS, Rules, rows_with_any
from poetry_lm.prosody.heard import first_line_rhyme_rate
from poetry_lm.request import PoemRequest, context_text
from poetry_lm.text.vocab import CharTable

FIRST_RHYME_STREAM = 104729  # the seed's second word for the first-line draw

# (repetition, same_place) in nats, per form (None: free poems), from docs/decoding.md
REPETITION_DEFAULTS: dict[str | None, tuple[float, float]] = {
    "五绝": (0.8, 0.8),
    "七绝": (1.0, 1.2),
    "五律": (1.2, 1.5),
    "七律": (1.5, 2.0),
    None: (1.2, 1.5),
}


@dataclass
class GeneratedPoem:
    text: str
    logprobs: list[float]  # the model's log-probability of each character of text
    score: float  # mean log-probability of all tokens written, the end included, less penalties
    rhyme: list[str]  # the rhyme groups its rhyming characters share (with rhyme on)
    backoffs: list[str]  # where a constraint was dropped for want of candidates
    truncated: bool = False  # max_len, not the model, ended it (at its last complete verse)
    backward: float | None = None  # mean log-probability per token read right to left (rerank)
    selected: float | None = None  # the figure --select ranked it by (worst verse, coherence)

    @property
    def lines(self) -> list[str]:
        return verses(self.text)


def repetition_of(request: PoemRequest) -> tuple[float, float]:
    """(repetition, same_place) in nats: the request's, else its form's defaults."""
    default = REPETITION_DEFAULTS[request.form]
    sampling = request.sampling
    return (
        default[0] if sampling.repetition_penalty is None else sampling.repetition_penalty,
        default[1] if sampling.same_place_penalty is None else sampling.same_place_penalty,
    )


def context_tokens(table: CharTable, request: PoemRequest) -> list[int]:
    """What every row reads before it writes: ``<bos>``, the title as context tokens with its
    ``<sep>`` (as in training), and the prime, closed by a 。 where it ends without a mark."""
    return table.encode_poem(context_text(request.prime), request.title)[:-1]  # not the end


def best(rows: list[GeneratedPoem]) -> GeneratedPoem:
    """Plain ranking: the candidate of the best score, the first such in row order."""
    return max(rows, key=lambda poem: poem.score)


class Rows:
    """What every row has written, step by step: its tokens, the model's log-probability of
    each, the penalty it paid, whether it was written before the row ended; and the penalty
    each row's next token would pay."""

    def __init__(self, R: int, V: int, steps: int):
        self.tokens = np.zeros((R, steps), dtype=np.int64)
        self.model_lp = np.zeros((R, steps), dtype=np.float32)
        self.paid = np.zeros((R, steps), dtype=np.float32)
        self.live = np.zeros((R, steps), dtype=bool)
        self.penalty = np.zeros((R, V), dtype=np.float32)  # nats each row's next token loses

    def reorder(self, index: np.ndarray) -> None:
        """Row b now continues row index[b] (a beam's step)."""
        for name in ("tokens", "model_lp", "paid", "live", "penalty"):
            setattr(self, name, getattr(self, name)[index])

    def poem(self, table: CharTable, rules: Rules, b: int) -> GeneratedPoem:
        """Row ``b``'s poem; a truncated poem is cut back to its last complete verse."""
        live = self.live[b]
        score = float((self.model_lp[b] - self.paid[b])[live].mean())
        tokens, logprobs = self.tokens[b][live], self.model_lp[b][live]
        chars = tokens != table.eos
        text = table.decode(tokens[chars].tolist())
        kept = logprobs[chars].tolist()
        truncated = bool(rules.truncated[b])
        if truncated and text and text[-1] not in CLOSING:  # back to its last complete verse
            keep = max((i + 1 for i, ch in enumerate(text) if ch in CLOSING), default=len(text))
            text, kept = text[:keep], kept[:keep]
        return GeneratedPoem(text, kept, score, rules.rhyme_of(b), rules.backoffs[b], truncated)


@torch.inference_mode()
def candidates(
    step: Stepper, table: CharTable, request: PoemRequest, starts: list[str], seeds: list[int]
) -> list[list[GeneratedPoem]]:
    """Every candidate of one poem per start text (``""`` lets the model choose its first
    character), poem i drawn from ``seeds[i]``, under a request checked by
    :meth:`PoemRequest.check`: per poem, its ``best_of`` samples or its ``beam`` final
    hypotheses (a beam that found fewer repeats its best), in row order; all one batch.

    A poem depends only on its start, its seed and the request, never on the other poems of
    the batch: the same start and seed give the same poem alone or beside any others (with
    int8 weights, bit for bit: see :mod:`poetry_lm.model.stepper`). Without a form, writing
    stops at the end token or within ``request.max_len`` characters (then at the last complete
    verse, and the poem is marked truncated); padding, begin and ``<unk>`` are never drawn.
    """
    if len(seeds) != len(starts):
        raise ValueError(f"{len(seeds)} seeds for {len(starts)} poems")
    width = request.width
    rows = [s for s in starts for _ in range(width)]
    firsts = [f for f in first_line_rhymes(request, seeds) for _ in range(width)]
    encoded = [table.encode(s) for s in rows]
    rules = Rules(table, request.constraints(), encoded, request.max_len, firsts)
    strategy = strategy_for(request.sampling, width, seeds, rules.max_steps)
    written = Rows(len(rows), len(table), rules.max_steps)
    first = step.read(context_tokens(table, request), len(rows))
    write(step, rules, strategy, written, first, repetition_of(request))
    poems = [written.poem(table, rules, b) for b in range(len(rows))]
    return [poems[first : first + width] for first in range(0, len(rows), width)]


def first_line_rhymes(request: PoemRequest, seeds: list[int]) -> list[bool]:
    """Per poem, whether its first line rhymes, where the request leaves it open: drawn from the
    poem's own seed (a stream of its own, so the sampling is untouched), at the rate of real
    poems of the form (``prosody.heard.first_line_rhyme_rate``: 七言 ~75%, 五言 ~15%). Greedy
    decoding takes the likelier choice, as it does for every character."""
    rate = first_line_rhyme_rate(request.form) if request.form else 0.0
    if request.sampling.is_greedy:  # the likelier choice, as for every character: no seed
        return [rate > 0.5] * len(seeds)
    return [np.random.default_rng([seed, FIRST_RHYME_STREAM]).random() < rate for seed in seeds]


def write(
    step: Stepper,
    rules: Rules,
    strategy: Strategy,
    written: Rows,
    first: tuple[torch.Tensor, StepState],
    penalties: tuple[float, float],
) -> None:
    """Write every row, token by token, from the model's ``first`` output and state, until all
    have ended: ``penalties`` (repetition, same place) in nats."""
    (logp, state), (repetition, same_place) = first, penalties
    ideographs = rules.ideographs.numpy()
    mask = rules.allowed()
    for t in range(rules.max_steps):
        lp = logp.numpy()
        # the same place, one verse up: its character pays same_place more, for this step only
        previous = same_places(rules)
        for b, prev in previous:
            written.penalty[b, prev] += same_place
        # (R, V) as they stand for this step, a keyword's character spared; and its bonus
        here, bonus = rules.keyword_terms(written.penalty)
        done = rules.done.numpy()
        next_ids, index = strategy.choose(t, lp - here + bonus, mask.numpy(), done, rules.forced)
        if index is not None:  # the rows were reordered: their same-place characters too
            rules.select(torch.from_numpy(index))
            state = state.select(torch.from_numpy(index))
            written.reorder(index)
            lp, here, previous = lp[index], here[index], same_places(rules)
        picked = np.arange(len(next_ids)), next_ids
        written.tokens[:, t], written.model_lp[:, t] = next_ids, lp[picked]
        written.paid[:, t], written.live[:, t] = here[picked], ~rules.done.numpy()
        for b, prev in previous:
            written.penalty[b, prev] -= same_place
        written.penalty[picked] += repetition * (ideographs[next_ids] & written.live[:, t])
        next_t = torch.from_numpy(next_ids)
        rules.advance(next_t)
        if rules.done.all():  # no model step after the last token
            return
        mask = rules.allowed()
        # a forced mark or end needs only its own log-probability: skip the clusters where it
        # is in the shortlist
        in_shortlist = rules.forced and not rows_with_any(mask[:, step.shortlist :]).any()
        logp, state = step(next_t, state, in_shortlist)


def same_places(rules: Rules) -> list[tuple[int, int]]:
    """(row, token) of each row's character at the same place one verse up, where it has one."""
    return [(b, p) for b, p in enumerate(rules.previous_verse_tokens()) if p >= 0]


def verses(poem: str) -> list[str]:
    """Split a poem after each verse-ending mark: one verse per line."""
    lines, current = [], ""
    for ch in poem:
        current += ch
        if ch in VERSE_ENDS:
            lines.append(current)
            current = ""
    return lines + [current] if current else lines
