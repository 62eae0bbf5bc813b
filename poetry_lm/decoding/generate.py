"""Writing poems: batched decoding from the language model, one poem per start text, under the
rules of :mod:`poetry_lm.prosody.forms` (forms, acrostics, rhyme without 重韵, tones, no-repeat,
no repeated verse).

Every poem is decoded as ``width`` rows of one batch (one forward pass per step for all):
``best_of`` independent samples, or the ``beam`` hypotheses of a stochastic beam search.

**Repetition penalty.** The model alone repeats characters far more than poets do (a character
3 or more times in over half of its 律诗, against 2–4% of real ones). Before each choice, a
character's log-probability loses ``repetition`` nats for each time the poem has used it, and
the character at the same place of the previous verse loses ``same_place`` more: a frequency
penalty (as OpenAI's API has one) and its verse-aware twin. The defaults, per form, are set so
that the rates measured by ``python -m poetry_lm decoding-stats`` sit at or under the train
split's (``docs/decoding.md``).

**Ranking.** The kept row is the one with the best mean penalised log-probability: the model's
own (unmasked) log-probability of each token written, the end token included, less the
penalties it paid, averaged. A candidate that repeats itself is ranked down, not up.
:func:`candidates` returns every row, so that another ranking can choose
(:mod:`poetry_lm.decoding.rerank`: forward plus backward log-probability).

**Stochastic beam search** (Kool, van Hoof & Welling 2019, "Stochastic Beams and Where to Find
Them"): each hypothesis carries a Gumbel-perturbed score, and its children's perturbed scores
are Gumbel-top-k draws conditioned on not exceeding their parent's, so the ``beam`` kept
hypotheses are samples without replacement from the (tempered, penalised, masked) model. Each
seed draws other samples, so ``-n`` and ``--seed`` give other poems; with ``greedy`` it is the
plain beam search.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from poetry_lm.model.stepper import Stepper
from poetry_lm.model.lm import PoetryLM
from poetry_lm.prosody.forms import (
    CLOSING,
    FREE_VERSE_MAX,
    FREE_VERSE_MIN,
    VERSE_ENDS,
    Constraints,
    Form,
    Rules,
    rows_with_any,
    token_masks,
)
from poetry_lm.settings import SettingError, setting
from poetry_lm.text.corpus import MAX_TITLE_CHARS
from poetry_lm.text.vocab import SPECIALS, CharTable

# (repetition, same_place) in nats, per form (None: free poems), from docs/decoding.md
REPETITION_DEFAULTS: dict[str | None, tuple[float, float]] = {
    "五绝": (0.8, 0.8),
    "七绝": (1.0, 1.2),
    "五律": (1.2, 1.5),
    "七律": (1.5, 2.0),
    None: (1.2, 1.5),
}
MAX_TEMPERATURE = 100.0  # above it the distribution is uniform to float32 precision


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
    max_len: int = setting(
        128,
        "Most characters per poem, the start text included (a form fixes the length: leave this "
        "at its default). A longer poem ends at its last complete couplet, reported by -v (and "
        '"truncated" in JSON).',
    )
    best_of: int = setting(
        1, "Sample K candidates per poem in one batch; keep the best (mean penalised log-prob)."
    )
    beam: int = setting(
        0, "Stochastic beam search of this width instead of sampling (0: sample; Gumbel-top-k)."
    )
    title: str = setting(
        "",
        f"Write for this title: its Chinese characters (at most {MAX_TITLE_CHARS}; marks and "
        "spaces are dropped), read first as context by a model trained with titles; characters "
        "it does not know read as <unk>.",
    )
    prime: str = setting("", "Read this first, as earlier verses of the poem, without printing it.")
    repetition: float | None = setting(
        None, "Nats off a character's log-probability per earlier use [default: the form's]."
    )
    same_place: float | None = setting(
        None, "Nats off the previous verse's character at the same place [default: the form's]."
    )

    def __post_init__(self):
        if self.beam and self.best_of > 1:
            raise SettingError("choose {beam} or {best_of}, not both")
        if self.greedy and self.best_of > 1:  # every candidate would be the same poem
            raise SettingError(
                "{greedy} draws the same candidate every time: give it or {best_of}, not both"
            )
        if not 0 < self.temperature <= MAX_TEMPERATURE:
            raise SettingError(
                f"{{temperature}} must be in (0, {MAX_TEMPERATURE:g}], not {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise SettingError(f"{{top_p}} must be in (0, 1], not {self.top_p}")
        for name in ("repetition", "same_place"):
            if (getattr(self, name) or 0) < 0:
                raise SettingError(f"{{{name}}} must be 0 or more, not {getattr(self, name)}")
        if len(self.title) > MAX_TITLE_CHARS:
            raise SettingError(
                f"{{title}} has {len(self.title)} characters; "
                f"at most {MAX_TITLE_CHARS} are accepted"
            )


def check_unused(opts: SampleOptions, given: Collection[str]) -> None:
    """Options a user gave (``given``: their SampleOptions field names) that the decoding asked
    for never reads are refused, not silently ignored. Greedy decoding, sampled or beam, takes
    the likeliest character: no ``temperature`` (a plain beam is untempered), ``top_k`` or
    ``top_p``. A beam search never samples: no ``top_k`` or ``top_p``. Raises SettingError
    naming the first such option."""
    if opts.greedy:
        unused, by = ("temperature", "top_k", "top_p"), "greedy"
    elif opts.beam:
        unused, by = ("top_k", "top_p"), "beam"
    else:
        return
    for name in unused:
        if name in given:
            raise SettingError(f"{{{name}}} has no effect with {{{by}}}: give one or the other")


def check_acrostic_starts(acrostic: str, starts: list[str]) -> None:
    """An acrostic sets the first character of every line, so it takes no start text: raises
    SettingError naming the acrostic where a start text is given beside it."""
    if acrostic and any(starts):
        raise SettingError(
            "{acrostic} sets the first character of every line, so no start text can be given"
        )


def free_poem_room(acrostic: str = "") -> int:
    """The characters a free poem may need: a couplet of the shortest verses,
    2 × (FREE_VERSE_MIN + 1), or, with an acrostic of n lines, n verses of the longest,
    n × (FREE_VERSE_MAX + 1)."""
    return len(acrostic) * (FREE_VERSE_MAX + 1) if acrostic else 2 * (FREE_VERSE_MIN + 1)


def check_max_len(form: Form | None, max_len: int, acrostic: str = "") -> None:
    """``max_len`` against what a poem needs, so that nothing is silently cut. Raises
    SettingError where there is a form and ``max_len`` is not its default (a form fixes the
    length, so it would be ignored), and for a free poem where it is below
    :func:`free_poem_room`."""
    if form is not None and max_len != SampleOptions.max_len:
        raise SettingError(
            f"a {form.name} has a fixed length ({form.lines} lines of {form.chars} characters), "
            "so {max_len} cannot be given with it"
        )
    needed = free_poem_room(acrostic)
    if form is None and max_len < needed:
        what = f"a {len(acrostic)}-line acrostic" if acrostic else "a free poem's shortest couplet"
        message = f"{what} may need {needed} characters: give at least {{max_len}} {needed}"
        raise SettingError(message)


@dataclass
class GeneratedPoem:
    text: str
    logprobs: list[float]  # the model's log-probability of each character of text
    score: float  # mean log-probability of all tokens written, the end included, less penalties
    rhyme: list[str]  # the rhyme groups its rhyming characters share (with rhyme on)
    backoffs: list[str]  # where a constraint was dropped for want of candidates
    truncated: bool = False  # max_len, not the model, ended it (at its last complete verse)
    backward: float | None = None  # mean log-probability per token read right to left (rerank)

    @property
    def lines(self) -> list[str]:
        return verses(self.text)


class UnknownCharacterError(SettingError):
    """A character the model cannot read, in the option ``{field}`` the message names."""


def check_start(table: CharTable, text: str, field: str = "start") -> None:
    """A text the model cannot read is an error naming the first offending character. Raises
    UnknownCharacterError (a SettingError) whose message names ``field``, the option that gave
    the text, as ``{field}``: the CLI and the API each word it as their option or field."""
    for ch in text:
        if ch not in table.index or ch in SPECIALS:
            shown = repr(ch).replace("{", "{{").replace("}", "}}")  # a brace is no placeholder
            raise UnknownCharacterError(
                f"the model does not know the character {shown} in {{{field}}}"
            )


def check_title(table: CharTable, title: str) -> list[str]:
    """A title for ``table``'s model → its characters that the model reads as ``<unk>`` (as it
    did in training, where titles were not counted into the vocabulary). Raises ValueError for
    a title with a model trained without titles."""
    table.encode_poem("", title)  # raises for a vocabulary without <sep>
    return table.unknown_chars(title)


def context_tokens(table: CharTable, opts: SampleOptions) -> list[int]:
    """What every row reads before it writes: ``<bos>``, the title as context tokens with its
    ``<sep>`` (as in training), and the prime, closed by a 。 where it ends without a mark.
    Raises ValueError for a title with a model trained without titles."""
    prime = opts.prime if not opts.prime or opts.prime[-1] in VERSE_ENDS else opts.prime + "。"
    return table.encode_poem(prime, opts.title)[:-1]  # all but the end token


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
        else:  # lighter than (1 - p)/V of the mass: all such tokens fall short of 1 - p together
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
    logp: np.ndarray, mask: np.ndarray, u: np.ndarray, opts: SampleOptions, forced: bool = False
) -> np.ndarray:
    """Log-probabilities (B, V), the tokens allowed (B, V) and uniform draws (B,) → one token per
    row (B,). ``forced``: every row allows one token, so none is drawn. In numpy: on rows of a
    few thousand numbers its calls cost a fraction of torch's."""
    masked = np.where(mask, logp, np.float32(-np.inf))  # (B, V)
    if forced or opts.greedy:
        return masked.argmax(1)
    return np.array([sample_row(row, u_b, opts) for row, u_b in zip(masked, u)])


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


def repetition_of(cons: Constraints, opts: SampleOptions) -> tuple[float, float]:
    """(repetition, same_place) in nats: the options', else the form's defaults."""
    default = REPETITION_DEFAULTS[cons.form.name if cons.form else None]
    return (
        default[0] if opts.repetition is None else opts.repetition,
        default[1] if opts.same_place is None else opts.same_place,
    )


def generate(*args, **kwargs) -> list[GeneratedPoem]:
    """One poem per start text: of each poem's candidates, the one with the best score (the first
    such, in row order). Takes the arguments of :func:`candidates` and raises its errors."""
    return [best(rows) for rows in candidates(*args, **kwargs)]


def best(rows: list[GeneratedPoem]) -> GeneratedPoem:
    """Plain ranking: the candidate of the best score, the first such in row order."""
    return max(rows, key=lambda poem: poem.score)


@torch.inference_mode()
def candidates(
    model: PoetryLM,
    table: CharTable,
    starts: list[str],
    opts: SampleOptions,
    generator: torch.Generator | None = None,
    cons: Constraints | None = None,
    step: Stepper | None = None,
    seeds: list[int] | None = None,
) -> list[list[GeneratedPoem]]:
    """Every candidate of one poem per start text (``""`` lets the model choose its first
    character): per poem, its ``best_of`` samples or its ``beam`` final hypotheses (a beam that
    found fewer repeats its best), in row order; all decoded as one batch.

    ``step``: a :class:`Stepper` of ``model``, so that many calls build it once (~0.15 s).
    ``seeds``: one per start, the seed of that poem's own random stream; by default drawn from
    ``generator``. A poem depends only on its start, its seed and the options, never on the other
    poems of the batch: the same start and seed give the same poem alone or beside any others
    (with int8 weights, bit for bit: see :mod:`poetry_lm.model.stepper`).

    Without a form, writing stops at the end token or within ``opts.max_len`` characters (then
    at the last complete verse, and the poem is marked truncated); padding, begin and ``<unk>``
    can never be drawn. ``opts.title`` is read first, as context (its characters the model does
    not know as ``<unk>``). Raises SettingError (a ValueError) naming the field at fault for a
    start, acrostic, prime or keyword the model cannot read, a start or prime longer than
    ``opts.max_len``, a start beside an acrostic, or keywords that cannot all fit
    (``KeywordError``, from :class:`Rules`); ValueError for a title with a model trained
    without.
    """
    cons = cons or Constraints()
    for text, field in [
        *((s, "start") for s in starts),
        (cons.acrostic, "acrostic"),
        (opts.prime, "prime"),
        *((k, "keywords") for k in cons.keywords),
    ]:
        check_start(table, text, field)
        if field in ("start", "prime") and len(text) > opts.max_len:
            raise SettingError(f"the {{{field}}} text is longer than {{max_len}} ({opts.max_len})")
    check_acrostic_starts(cons.acrostic, starts)
    if seeds is None:
        seeds = torch.randint(0, 2**62, (len(starts),), generator=generator).tolist()
    if len(seeds) != len(starts):
        raise ValueError(f"{len(seeds)} seeds for {len(starts)} poems")
    width = opts.beam or opts.best_of
    rows = [s for s in starts for _ in range(width)]
    R, V = len(rows), len(table)
    rules = Rules(table, cons, [table.encode(s) for s in rows], opts.max_len)
    step = step or Stepper(model)
    logp, state = step.read(context_tokens(table, opts), R)
    # row j of a poem of seed s draws from seed s + j (best-of K's candidates are the poems of
    # seeds s … s + K - 1); a beam's noise comes from its poem's seed
    streams = [torch.Generator().manual_seed(seed + j) for seed in seeds for j in range(width)]
    uniforms = np.stack([torch.rand(rules.max_steps, generator=g).numpy() for g in streams], 1)
    beam_noise = [torch.Generator().manual_seed(seed) for seed in seeds]
    repetition, same_place = repetition_of(cons, opts)
    ideographs = token_masks(table).ideographs.numpy()
    penalty = np.zeros((R, V), dtype=np.float32)  # nats each row's next token loses
    keys = np.full((len(starts), width), -np.inf, dtype=np.float32)  # beam: one hypothesis
    keys[:, 0] = 0
    sums = keys.copy()
    tokens = np.zeros((R, rules.max_steps), dtype=np.int64)  # every row's tokens, step by step
    model_lp = np.zeros((R, rules.max_steps), dtype=np.float32)  # … the model's log-probabilities
    paid = np.zeros((R, rules.max_steps), dtype=np.float32)  # … the penalties paid
    live = np.zeros((R, rules.max_steps), dtype=bool)  # … written before the row ended
    mask = rules.allowed()
    for t in range(rules.max_steps):
        lp = logp.numpy()
        # the same place, one verse up: its character pays same_place more, for this step only
        previous = [(b, p) for b, p in enumerate(rules.previous_verse_tokens()) if p >= 0]
        for b, prev in previous:
            penalty[b, prev] += same_place
        # (R, V) as they stand for this step, a keyword's character spared; and its bonus
        here, bonus = rules.keyword_terms(penalty)
        allowed = mask.numpy()
        if opts.beam:  # a finished hypothesis may only repeat the end token, at no cost
            done = rules.done.numpy()
            scored = np.where(allowed, lp - here + bonus, np.float32(-np.inf))
            scored[done] = np.where(allowed[done], 0, -np.inf)
            noise = None
            if not opts.greedy:  # tempered, then Gumbel-perturbed
                scored = log_softmax(scored / opts.temperature)
                noise = np.concatenate(
                    [
                        -np.log(-np.log(torch.rand(width, V, generator=g).numpy() + 1e-20) + 1e-20)
                        for g in beam_noise
                    ]
                )
            next_ids, index, keys, sums = beam_step(keys, sums, scored, noise)
            index_t = torch.from_numpy(index)
            rules.select(index_t)
            state = state.select(index_t)
            tokens, model_lp, paid, live = tokens[index], model_lp[index], paid[index], live[index]
            penalty, lp, here = penalty[index], lp[index], here[index]
        else:
            next_ids = sample_step(lp - here + bonus, allowed, uniforms[t], opts, rules.forced)
        picked = np.arange(R), next_ids
        tokens[:, t], model_lp[:, t], paid[:, t] = next_ids, lp[picked], here[picked]
        live[:, t] = ~rules.done.numpy()
        if opts.beam:  # the rows were reordered: find each row's same-place character again
            previous = [(b, p) for b, p in enumerate(rules.previous_verse_tokens()) if p >= 0]
        for b, prev in previous:
            penalty[b, prev] -= same_place
        penalty[picked] += repetition * (ideographs[next_ids] & live[:, t])
        next_t = torch.from_numpy(next_ids)
        rules.advance(next_t)
        if rules.done.all():  # no model step after the last token
            break
        mask = rules.allowed()
        # a forced mark or end needs only its own log-probability: skip the clusters where it is
        # in the shortlist
        in_shortlist = rules.forced and not rows_with_any(mask[:, step.shortlist :]).any()
        logp, state = step(next_t, state, in_shortlist)
    scores = [float((model_lp[b] - paid[b])[live[b]].mean()) for b in range(R)]
    poems = [
        row_poem(table, rules, b, tokens[b][live[b]], model_lp[b][live[b]], scores[b])
        for b in range(R)
    ]
    return [poems[first : first + width] for first in range(0, R, width)]


def row_poem(
    table: CharTable, rules: Rules, b: int, tokens: np.ndarray, logprobs: np.ndarray, score: float
) -> GeneratedPoem:
    """Row ``b``'s poem from the tokens it wrote (n,) and their log-probabilities (n,); a
    truncated poem is cut back to its last complete verse."""
    chars = tokens != table.eos
    text = table.decode(tokens[chars].tolist())
    kept = logprobs[chars].tolist()
    truncated = bool(rules.truncated[b])
    if truncated and text and text[-1] not in CLOSING:  # back to its last complete verse
        keep = max((i + 1 for i, ch in enumerate(text) if ch in CLOSING), default=len(text))
        text, kept = text[:keep], kept[:keep]
    return GeneratedPoem(text, kept, score, rules.rhyme_of(b), rules.backoffs[b], truncated)


def verses(poem: str) -> list[str]:
    """Split a poem after each verse-ending mark: one verse per line."""
    lines, current = [], ""
    for ch in poem:
        current += ch
        if ch in VERSE_ENDS:
            lines.append(current)
            current = ""
    return lines + [current] if current else lines
