"""Keywords (主题词): ``--keywords "春 雨 归"`` writes a poem in which every keyword appears as
given, its characters together inside one verse. Coverage is a rule of decoding, kept at every
step like the form's, not a hope.

**The plan.** Each poem keeps a plan for the keywords it has not written yet, in a fixed order:
each at the *latest* place (verse, column) where it and the ones after it still fit, found right
to left. Keywords go one to a verse while they can, by verses spread over those left (in a 七律,
by lines 3, 6 and 8 for three), else as late as they fit; several share a verse only when they
must (packed). A keyword never takes a place whose character is fixed otherwise (an
acrostic's head, a start text) unless that character is its own, and never the rhyme of a
rhyming verse unless its last character may rhyme there (in the rhyme group, not used yet: no
重韵). That is only known in the verse being written: a later verse's rhyme is never counted on.

**Bonus, then deadline.** Where a keyword may begin at the next character and the others still
fit after it, its first character gains ``KEYWORD_BONUS - log R`` nats, R being the places left
before its latest one, and pays no repetition penalty (one keyword to a verse while the plan is
spread): the model places it where it likes it, and more readily as its places run out. Once
begun, its other characters are forced in turn. When the plan's first keyword must begin at
the next character, it is forced there; with ``tones`` at the latest place of its verse where it
fits the 平仄, which it overrides only where no such place is left (the poem records that).

**Free poems.** Their number of verses is not fixed. The plan takes the fewest couplets that hold
the keywords one to a verse, counting those written so far, within the couplets ``max_len``
leaves room for; the poem may not end while a keyword is missing; the first verse may end only
at a length with which the remaining keywords still fit the verses after it.

A keyword already in the start text, or one the model writes anywhere on its own, is covered.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import is_ideograph

# nats added to a keyword's first character where it may begin, less log R where R places are
# left before its latest place (docs/decoding.md measures the choice)
KEYWORD_BONUS = 6.0
MAX_KEYWORDS = 6  # per poem (every order of them is tried before giving up: 720 at most)
MAX_KEYWORD_CHARS = 12  # a free poem's longest verse
SEPARATORS = re.compile(r"[\s,，、]+")


class KeywordError(SettingError):
    """Keywords that are empty, not characters, or that cannot all fit the poem asked for.

    A SettingError, so that the command line and the API each name the setting at fault in
    their own words: ``fields[0]`` is ``keywords``, unless the message names another as a
    placeholder (``{max_len}``, where the poem's length leaves no room).

    ``max_len``: where a free poem's ``max_len`` is what binds, that value; the message then
    ends by asking for a larger one, and ``reason`` is the message without that advice
    (:func:`poetry_lm.prosody.forms.check_keywords` replaces it by the least that fits)."""

    def __init__(self, reason: str, max_len: int | None = None):
        self.reason, self.max_len = reason, max_len
        advice = "" if max_len is None else f"; give a larger {{max_len}} than {max_len}"
        super().__init__(reason + advice)
        self.fields = self.fields or ["keywords"]


def check_keyword_text(text: str) -> str:
    """A keyword text as given (a ``--keywords`` value, an element of the API's ``keywords``)
    → itself; raises KeywordError where it holds no keyword (empty, or blanks and separators
    only): a slip to point out, not a wish for no keywords."""
    if not any(SEPARATORS.split(text)):
        raise KeywordError(f"a keyword is empty ({text!r}); each must hold Chinese characters")
    return text


def split_keywords(values: str | Iterable[str]) -> list[str]:
    """``"春 雨,归、明月"`` (or several such strings) → ``["春", "雨", "归", "明月"]``: split on
    whitespace, commas and 、. Raises KeywordError for a string that holds no keyword."""
    texts = [values] if isinstance(values, str) else list(values)
    return [k for text in texts for k in SEPARATORS.split(check_keyword_text(text)) if k]


def check_keyword_limits(keywords: Iterable[str]) -> list[str]:
    """Keywords (split) without repeats; raises KeywordError for one longer than
    MAX_KEYWORD_CHARS, or for more than MAX_KEYWORDS."""
    keywords = list(dict.fromkeys(keywords))
    for k in keywords:
        if len(k) > MAX_KEYWORD_CHARS:
            shown = repr(k).replace("{", "{{").replace("}", "}}")  # text, not a placeholder
            raise KeywordError(
                f"the keyword {shown} has {len(k)} characters; a verse holds {MAX_KEYWORD_CHARS}"
            )
    if len(keywords) > MAX_KEYWORDS:
        raise KeywordError(f"at most {MAX_KEYWORDS} keywords, not {len(keywords)}")
    return keywords


def clean_keywords(keywords: Iterable[str]) -> tuple[str, ...]:
    """Keywords (already read by the text rule) checked and tidied: repeats, and keywords inside
    another (writing 春风 writes 春), are dropped. Raises KeywordError for one that is empty, not
    all Chinese characters or longer than MAX_KEYWORD_CHARS, or for more than MAX_KEYWORDS."""
    keywords = list(keywords)
    for k in keywords:
        if not k or not all(map(is_ideograph, k)):
            shown = repr(k).replace("{", "{{").replace("}", "}}")  # text, not a placeholder
            raise KeywordError(f"the keyword {shown} must be Chinese characters only")
    keywords = check_keyword_limits(keywords)
    return tuple(k for k in keywords if not any(k != o and k in o for o in keywords))


@dataclass
class Layout:
    """Where one poem's keywords may go: its verses and what is fixed in them (poems of a batch
    with the same start text share one), and the order its plan takes them in."""

    index: int  # among the batch's layouts: its part of the key of the plans' cache
    length: int | None  # characters per verse; None: a free poem's, set by its first verse
    verses: int | None  # how many: a form's lines, a free acrostic's heads; None: free
    fixed: dict[tuple[int, int], int]  # (verse, column) → the token an acrostic or start puts there
    rhyming: frozenset[int] | None  # the verses whose last character rhymes; None: the odd ones
    first_lengths: range  # the first verse's possible lengths
    max_len: int  # tokens the poem may take
    covered: frozenset[int]  # the keywords the start text holds
    order: tuple[int, ...] = ()  # the others, in the order of the plan
    # a free poem's verses, which max_len keeps shorter than they could be (no start text
    # ends the first): a larger max_len gives longer ones
    short: bool = False

    def rhymes(self, verse: int) -> bool:
        """Whether ``verse``'s last character is a rhyme (a free poem's odd verses, 0-based)."""
        return verse % 2 == 1 if self.rhyming is None else verse in self.rhyming

    def fits(
        self, ids: tuple[int, ...], verse: int, col: int, length: int, may_rhyme: bool
    ) -> bool:
        """Whether the keyword of tokens ``ids`` may stand at (verse, col), verses being
        ``length`` long: inside the verse, on no character fixed otherwise, and not on a rhyme
        unless ``may_rhyme`` (its last token may be the verse's rhyme)."""
        end = col + len(ids)
        if col < 0 or end > length:
            return False
        for j, token in enumerate(ids):
            fixed = self.fixed.get((verse, col + j))
            if fixed is not None and fixed != token:
                return False
        return may_rhyme or end < length or not self.rhymes(verse)

    def horizons(self, verse: int, length: int, wanted: int) -> Iterable[int]:
        """Verse counts to plan over, fewest first: a form's or acrostic's own; for a free poem
        the fewest whole couplets that give ``wanted`` verses from ``verse`` on, then more, up to
        those ``max_len`` leaves room for."""
        room = self.max_len // (length + 1)  # verses, each with its mark
        if self.verses is not None:
            return [min(self.verses, room)]
        room -= room % 2  # whole couplets
        fewest = max(2, verse + wanted + (verse + wanted) % 2)
        return range(min(fewest, room), room + 1, 2)


@dataclass
class Step:
    """One poem's keyword rule for its next token."""

    force: int | None = None  # the only character it may write (its marks and end kept)
    offers: dict[int, int] = field(default_factory=dict)  # first token → the keyword it begins
    bonus: dict[int, float] = field(default_factory=dict)  # first token → its bonus, nats
    mark_ok: bool | None = None  # a free poem's first verse may end here (None: no say) …
    mark_due: bool = False  # … or must


class Plan(NamedTuple):
    """The latest places of a poem's keywords still to write, and the terms that found them."""

    places: list[tuple[int, int]]  # (verse, column) of each keyword, in the plan's order
    per: int  # keywords to a verse at most (1: spread, one to a verse)
    verses: int  # the poem's verse count it assumes (a free poem's: whole couplets, fewest first)


class Coverage:
    """The keywords of every poem of one batch of :class:`~poetry_lm.prosody.forms.Rules`: which
    each has written, and what its next token must or may be so that the others still fit (see
    the module doc). ``Rules`` calls it at each step.

    Keyword i is ``ids[i]``, its token ids; poem b is row b of the batch.

    Raises KeywordError at construction where some poem's keywords cannot all fit."""

    def __init__(self, rules, starts: list[list[int]]):
        self.rules = rules
        self.ids = [tuple(rules.table.encode(k)) for k in rules.cons.keywords]
        tokens = {t for ids in self.ids for t in ids}
        # a keyword token's rhyme groups (rows of rules.group_fits) and tones ([平, 仄] fits)
        self.groups_of = {
            t: set(rules.group_fits[:, t].nonzero().flatten().tolist()) for t in tokens
        }
        self.tones = rules.cons.tones and rules.cons.form is not None
        if self.tones:
            self.tone_of = {t: rules.tone_fits[:, t].tolist() for t in tokens}
        self.plans: dict[tuple, list[tuple[int, int]] | None] = {}  # latest()'s, by its arguments
        self.ends = set(rules.ends.nonzero().flatten().tolist())  # the verse-ending marks
        layouts: dict[tuple[int, ...], Layout] = {}
        for start in map(tuple, starts):
            if start not in layouts:
                layouts[start] = self.layout_of(start, len(layouts))
        self.layout = [layouts[tuple(s)] for s in starts]
        self.covered = [set(lay.covered) for lay in self.layout]
        self.progress: list[tuple[int, int] | None] = [None] * len(starts)  # (keyword, written)
        self.in_verse = [0] * len(starts)  # keywords written in the verse being written
        self.steps = [Step() for _ in starts]

    # -- where the keywords can go ---------------------------------------------------------

    def layout_of(self, start: tuple[int, ...], index: int) -> Layout:
        """A start text's layout, with an order of its keywords that fits (KeywordError where
        none does)."""
        rules = self.rules
        cons, form = rules.cons, rules.cons.form
        heads = rules.heads.float().argmax(1).tolist()  # the acrostic's head tokens
        fixed = {(v, 0): h for v, h in enumerate(heads)}
        verse = col = 0
        first = None  # the first verse's length, where the start text ends it
        for token in start:
            if rules.ends[token]:
                first = col if first is None else first
                verse, col = verse + 1, 0
            else:
                fixed[(verse, col)] = token
                col += 1
        if form:
            lengths = range(form.chars, form.chars + 1)
            rhyming = frozenset(rules.rhymed if cons.rhyme else ())
        else:
            if first is not None:
                lengths = range(first, first + 1)
            else:  # no shorter than the start text's first verse
                lengths = range(max(rules.first_verse_min(), col), rules.first_verse_max() + 1)
            rhyming = None if cons.rhyme else frozenset()
        text = rules.table.decode(list(start))
        lay = Layout(
            index,
            length=form.chars if form else None,
            verses=form.lines if form else (len(heads) or None),
            fixed=fixed,
            rhyming=rhyming,
            first_lengths=lengths,
            max_len=rules.max_steps if form else rules.max_len,
            covered=frozenset(i for i, k in enumerate(cons.keywords) if k in text),
            short=not form and first is None and lengths[-1] < MAX_KEYWORD_CHARS,
        )
        lay.order = self.order_that_fits(lay)
        return lay

    def order_that_fits(self, lay: Layout) -> tuple[int, ...]:
        """The keywords ``lay``'s start text does not hold, in the order given if they fit so,
        else in the first order that does (the plan is greedy: one order may fail where another
        fits). Raises KeywordError, saying why, where none does."""
        wanted = tuple(i for i in range(len(self.ids)) if i not in lay.covered)
        for order in itertools.chain([wanted], itertools.permutations(wanted)):
            if self.first_step(lay, order) is not None:
                return order
        why, binds = self.why_not(lay, wanted)
        raise KeywordError(why, lay.max_len if binds else None)

    def first_step(self, lay: Layout, order: tuple[int, ...]) -> Step | None:
        """The rule for a poem's first token, its keywords taken in ``order``; None where they
        do not fit."""
        if not order:
            return Step()
        if lay.length is None:
            return self.first_verse(lay, order, 0, 0)
        may_rhyme = self.may_rhyme(0, order) if lay.rhymes(0) else frozenset()
        return None if self.plan(lay, order, 0, 0, lay.length, 0, may_rhyme) is None else Step()

    def latest(
        self,
        lay: Layout,
        order: tuple[int, ...],
        verse: int,
        length: int,
        count: int,
        per: int,
        may_rhyme: frozenset[int],
        spread: int | None = None,
    ) -> list[tuple[int, int]] | None:
        """The latest places (verse, column) of the keywords ``order`` (right to left, so that
        each is as late as the ones after it allow) in verses ``verse`` to ``count`` - 1, at
        most ``per`` to a verse; None where they do not fit. ``spread``, a verse s: the j-th of
        m keywords no later than verse ``s + ceil((j + 1)(count - s)/m) - 1``, so that they
        spread over the verses left (in a 七律 from s = 0, by verses 2, 5 and 7 for three,
        0-based) rather than pile up at the end. Every column of ``verse`` is open: callers
        compare the first place with their own.
        ``may_rhyme``: the keywords that may end on the rhyme of ``verse`` (of a later verse,
        none may: its group is not settled yet). Cached, as a poem asks the same at every
        column of a verse."""
        args = (lay.index, order, verse, length, count, per, may_rhyme, spread)
        if args not in self.plans:
            places: list[tuple[int, int]] = []
            # the next keyword's (verse, column), and how many keywords its verse holds: each
            # keyword goes before it; (count, 0, 0) is the end of the poem
            after = (count, 0, 0)
            for j in reversed(range(len(order))):
                i = order[j]
                if spread is not None:  # before verse s + ceil((j + 1)(count - s)/m), in integers
                    limit = spread - (-(j + 1) * (count - spread) // len(order))
                    after = min(after, (limit, 0, 0))
                spot = self.last_place(lay, i, verse, length, after, per, i in may_rhyme)
                if spot is None:
                    self.plans[args] = None
                    return None
                after = (*spot, after[2] + 1 if spot[0] == after[0] else 1)
                places.append(spot)
            self.plans[args] = places[::-1]
        return self.plans[args]

    def last_place(
        self,
        lay: Layout,
        i: int,
        verse: int,
        length: int,
        after: tuple[int, int, int],
        per: int,
        may_rhyme: bool,
    ) -> tuple[int, int] | None:
        """The latest place (verse, column) of keyword i from ``verse`` on and before ``after``
        (verse, column, keywords in that verse), or None; ``may_rhyme``: it may end on the rhyme
        of ``verse`` (only)."""
        ids, (bound, bound_col, in_bound) = self.ids[i], after
        for v in range(bound, verse - 1, -1):  # (at ``bound`` itself, before bound_col)
            if v == bound and in_bound >= per:
                continue
            end = bound_col if v == bound else length
            for col in range(end - len(ids), -1, -1):
                if lay.fits(ids, v, col, length, may_rhyme and v == verse):
                    return v, col
        return None

    def plan(
        self,
        lay: Layout,
        order: tuple[int, ...],
        verse: int,
        col: int,
        length: int,
        in_verse: int,
        may_rhyme: frozenset[int],
    ) -> Plan | None:
        """The first plan that fits from (verse, col): spread before packed, fewer verses before
        more; None where none does. ``in_verse``: keywords already written in ``verse``."""
        written = in_verse > 0
        for per in range(1, len(order) + 1):
            for count in lay.horizons(verse, length, len(order) + written):
                for spread in (verse + written, None):  # from the next verse free of one
                    places = self.latest(lay, order, verse, length, count, per, may_rhyme, spread)
                    if places is not None and places[0] >= (verse, col):
                        return Plan(places, per, count)
        return None

    def rest_fit(
        self,
        i: int,
        at: tuple[int, int],
        lay: Layout,
        order: tuple[int, ...],
        length: int,
        plan: Plan,
        may_rhyme: frozenset[int],
    ) -> bool:
        """Whether the keywords of ``order`` other than i still fit after keyword i, begun at
        ``at`` (verse, column), in ``plan``'s verses and at most its ``per`` to a verse."""
        verse, col = at
        rest = tuple(o for o in order if o != i)
        if not rest:
            return True
        places = self.latest(lay, rest, verse, length, plan.verses, plan.per, may_rhyme)
        return places is not None and places[0] >= (verse, col + len(self.ids[i]))

    def may_rhyme(self, b: int, order: tuple[int, ...]) -> frozenset[int]:
        """The keywords whose last token may be the rhyme of poem b's verse: in a rhyme group
        still open to it, not used at a verse's end yet (no 重韵)."""
        rules, lasts = self.rules, [self.ids[i][-1] for i in order]
        open_ = rules.groups.open[b].tolist()
        used = rules.rhymes_used[b, lasts].tolist()
        return frozenset(
            i
            for i, last, taken in zip(order, lasts, used)
            if not taken and any(open_[g] for g in self.groups_of[last])
        )

    def tone_fits(self, b: int, ids: tuple[int, ...], verse: int, col: int) -> bool:
        """Whether keyword tokens ``ids`` at (verse, col) fit the 平仄 of a tonal key (平起 or
        仄起) still open to poem b."""
        open_keys = self.rules.keys.open[b].tolist()
        tone_rules = [self.rules.tone_rule_at(verse, col + j) for j in range(len(ids))]
        return any(
            open_keys[k]
            and all(
                rule is None or self.tone_of[t][rule[k]] > 0 for t, rule in zip(ids, tone_rules)
            )
            for k in (0, 1)
        )

    # -- each step -------------------------------------------------------------------------

    def decide(self) -> None:
        """Each poem's rule for its next token (``steps``), from where it stands."""
        rules = self.rules
        done, line, col = rules.done.tolist(), rules.line.tolist(), rules.col.tolist()
        length = rules.length.tolist()
        for b, lay in enumerate(self.layout):
            self.steps[b] = Step() if done[b] else self.step_of(b, lay, line[b], col[b], length[b])

    def step_of(self, b: int, lay: Layout, verse: int, col: int, length: int) -> Step:
        """Poem b's rule at (verse, col), verses ``length`` long (0: a free poem's first, not
        set yet): a begun keyword's next character, else the rule of :meth:`first_verse` or of
        :meth:`verse_step`. Raises RuntimeError if no plan fits (it always does: each step keeps
        one)."""
        if self.progress[b] is not None:  # a keyword begun: its next token
            i, j = self.progress[b]
            return Step(force=self.ids[i][j], mark_ok=False)
        order = tuple(i for i in lay.order if i not in self.covered[b])
        length = lay.length or length
        # every keyword written, past a fixed count of verses, or at the verse's mark
        if not order or verse >= (lay.verses or verse + 1) or (length and col >= length):
            return Step()
        if not length:
            step = self.first_verse(lay, order, col, self.in_verse[b])
            if step is None:
                raise RuntimeError("the keyword plan was lost in the first verse")  # a bug
            return step
        return self.verse_step(b, lay, order, (verse, col), length)

    def verse_step(
        self, b: int, lay: Layout, order: tuple[int, ...], at: tuple[int, int], length: int
    ) -> Step:
        """Poem b's rule at ``at`` (verse, column) of a verse of known ``length``, keywords
        ``order`` still to write: the plan's first keyword where it is due, else an offer of
        each keyword that may begin here with the others still fitting after it."""
        verse, col = at
        may_rhyme = self.may_rhyme(b, order) if lay.rhymes(verse) else frozenset()
        plan = self.plan(lay, order, verse, col, length, self.in_verse[b], may_rhyme)
        if plan is None:
            raise RuntimeError(f"the keyword plan was lost at verse {verse}, column {col}")  # a bug
        first = order[0]
        if plan.places[0][0] == verse and self.due(
            b, lay, first, (verse, col, length), plan.places[0][1], may_rhyme
        ):
            return Step(force=self.ids[first][0], offers={self.ids[first][0]: first})
        if self.in_verse[b] and plan.per == 1:  # spread: one keyword to a verse
            return Step()
        step = Step()
        for i, last in zip(order, plan.places):
            ids = self.ids[i]
            if ids[0] in step.offers or not lay.fits(ids, verse, col, length, i in may_rhyme):
                continue
            if self.tones and not self.tone_fits(b, ids, verse, col):
                continue
            if self.rest_fit(i, at, lay, order, length, plan, may_rhyme):
                self.offer(step, i, at, last, length)
        return step

    def offer(
        self, step: Step, i: int, at: tuple[int, int], last: tuple[int, int], length: int
    ) -> None:
        """Offer keyword i at ``at`` (verse, column), its latest place being ``last``: the
        bonus grows as the places left shrink, so that it is placed where the model likes it,
        early only where the model likes it there."""
        token = self.ids[i][0]
        left = max(1, (last[0] - at[0]) * length + last[1] - at[1] + 1)
        step.offers[token], step.bonus[token] = i, KEYWORD_BONUS - math.log(left)

    def due(
        self,
        b: int,
        lay: Layout,
        i: int,
        where: tuple[int, int, int],
        last: int,
        may_rhyme: frozenset[int],
    ) -> bool:
        """Whether keyword i, whose latest place in this verse is column ``last``, must begin at
        ``where`` (verse, column, verse length): at ``last``, or with tones at the latest column
        that fits them, if one does."""
        verse, col, length = where
        if col == last:
            return True
        if not self.tones:
            return False
        ids = self.ids[i]
        for c in range(last, col - 1, -1):
            if lay.fits(ids, verse, c, length, i in may_rhyme) and self.tone_fits(b, ids, verse, c):
                return c == col
        return False

    def first_verse(
        self, lay: Layout, order: tuple[int, ...], col: int, in_verse: int
    ) -> Step | None:
        """The rule in a free poem's first verse, before its length is set: the lengths still
        open are those with which the keywords fit; None where there is none. ``in_verse``:
        keywords already written in it. (No tones, no rhyme: a free poem's first verse has
        neither.)"""
        plans = {}
        for length in lay.first_lengths:
            if length >= col:
                found = self.plan(lay, order, 0, col, length, in_verse, frozenset())
                if found is not None:
                    plans[length] = found
        if not plans:
            return None
        longer = [length for length in plans if length > col]
        mark_ok = col in plans
        if not longer:
            return Step(mark_ok=True, mark_due=True)
        first = self.ids[order[0]]
        if all(plans[length].places[0] == (0, col) for length in longer):
            return Step(force=first[0], offers={first[0]: order[0]}, mark_ok=mark_ok)
        if in_verse and all(plans[length].per == 1 for length in longer):
            return Step(mark_ok=mark_ok)
        step = Step(mark_ok=mark_ok)
        for j, i in enumerate(order):
            ids = self.ids[i]
            for length in longer:
                plan = plans[length]
                if ids[0] in step.offers or not lay.fits(ids, 0, col, length, False):
                    continue
                if self.rest_fit(i, (0, col), lay, order, length, plan, frozenset()):
                    self.offer(step, i, (0, col), plan.places[j], length)
        return step

    def first_verse_marks(self, mark_due: torch.Tensor, mark_ok: torch.Tensor):
        """A free poem's marks (B,) at its first verse's end, narrowed to the lengths with which
        its keywords fit (and none while a keyword is being written)."""
        first = (self.rules.length == 0).tolist()
        ruled = [(b, s) for b, s in enumerate(self.steps) if s.mark_ok is not None and first[b]]
        if ruled:
            mark_due, mark_ok = mark_due.clone(), mark_ok.clone()
            for b, step in ruled:
                mark_due[b], mark_ok[b] = step.mark_due, step.mark_ok
        return mark_due, mark_ok

    def hold_end(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, V): a free poem may not end while a keyword is missing (where it has a choice)."""
        eos = self.rules.table.eos
        held = [b for b in range(len(mask)) if self.missing(b) and mask[b].sum() > 1]
        if held:
            mask = mask.clone()
            mask[held, eos] = False
        return mask

    def narrow(self, mask: torch.Tensor, layers) -> torch.Tensor:
        """(B, V) after the layers → the forced keyword characters alone, where they are due (the
        marks and end the shape allows kept), over any layer but the shape, recorded in the
        poem's backoffs. With no-repeat, the characters of a keyword still to write wait for it.
        Raises RuntimeError if the shape itself forbids a forced character (a bug)."""
        rules, out = self.rules, None
        done = rules.done.tolist() if rules.cons.no_repeat else None  # None: no waiting
        for b, step in enumerate(self.steps):
            if step.force is not None:
                out = mask.clone() if out is None else out
                token = step.force
                if not out[b, token]:
                    self.record_override(b, token, layers)
                out[b] &= ~rules.ideographs
                out[b, token] = True
            elif done is not None and not done[b]:
                waiting = self.waiting(b, step)
                row = mask[b].clone()
                row[waiting] = False
                if waiting and row.any():
                    out = mask.clone() if out is None else out
                    out[b] = row
        return mask if out is None else out

    def record_override(self, b: int, token: int, layers) -> None:
        """Record in poem b's backoffs the layers that forbid the keyword ``token`` forced
        over them. Raises RuntimeError where none does (the shape does: a bug)."""
        rules = self.rules
        dropped = [name for name, layer in layers if not layer[b, token]]
        if not dropped:  # the plan never puts a keyword where the shape forbids
            raise RuntimeError(f"a keyword's character is out of place in poem {b}")
        rules.backoffs[b].append(
            f"line {int(rules.line[b]) + 1} character {int(rules.col[b]) + 1}: "
            f"keyword {rules.table.tokens[token]} over {', '.join(dropped)}"
        )

    def waiting(self, b: int, step: Step) -> list[int]:
        """With no-repeat, the characters of poem b's missing keywords of two or more characters,
        but those offered here: written alone, one would be used up, and its keyword could no
        longer be written. (A missing keyword of one character is covered wherever it comes.)"""
        tokens = {t for i in self.missing(b) if len(self.ids[i]) > 1 for t in self.ids[i]}
        return list(tokens - set(step.offers))

    def terms(self, penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """The repetition penalties (R, V) with none on a keyword's character where it may be
        written, and the bonus (R, V) for those (0 where there are none)."""
        cells = [
            (b, t, step.bonus.get(t, 0.0))
            for b, step in enumerate(self.steps)
            for t in [*step.offers, *([] if step.force is None else [step.force])]
        ]
        if not cells:
            return penalty, 0.0
        rows, tokens, nats = zip(*cells)
        spared, bonus = penalty.copy(), np.zeros(penalty.shape, penalty.dtype)
        spared[rows, tokens] = 0
        bonus[rows, tokens] = nats
        return spared, bonus

    def advance(self, tokens: list[int], live: list[bool]) -> None:
        """Record the tokens just written (after ``Rules`` has)."""
        for b, (token, alive) in enumerate(zip(tokens, live)):
            if not alive:
                continue
            if token in self.ends:
                self.in_verse[b] = 0
                continue
            offers = self.steps[b].offers
            if self.progress[b] is not None:
                i, j = self.progress[b]
                self.progress[b] = (i, j + 1) if j + 1 < len(self.ids[i]) else None
            elif token in offers and len(self.ids[offers[token]]) > 1:  # a keyword begun
                self.progress[b] = (offers[token], 1)
            current = self.rules.current[b]
            for i in self.missing(b):  # written, by the rule or on its own
                ids = self.ids[i]
                if tuple(current[-len(ids) :]) == ids:
                    self.covered[b].add(i)
                    self.in_verse[b] += 1

    def missing(self, b: int) -> list[int]:
        """The keywords poem b has not written (whole) yet."""
        return [i for i in range(len(self.ids)) if i not in self.covered[b]]

    def select(self, order: list[int]) -> None:
        """Reorder the batch as ``Rules.select`` does."""
        self.layout = [self.layout[i] for i in order]
        self.covered = [set(self.covered[i]) for i in order]
        self.progress = [self.progress[i] for i in order]
        self.in_verse = [self.in_verse[i] for i in order]
        self.steps = [self.steps[i] for i in order]

    # -- why not -------------------------------------------------------------------------------

    def why_not(self, lay: Layout, wanted: tuple[int, ...]) -> tuple[str, bool]:
        """One sentence on why the keywords ``wanted`` do not fit ``lay``, and whether a free
        poem's ``max_len`` is what binds (its lines or their count: a larger one would help)."""
        cons = self.rules.cons
        if cons.form:
            shape = f"a {cons.form.name}"
        elif lay.verses:
            shape = f"a {lay.verses}-line acrostic"
        else:
            shape = "a free poem"
        length = lay.length or lay.first_lengths[-1]
        verses = lay.verses or lay.max_len // (length + 1)
        fixes = [
            ("the acrostic fixes each line's first character", cons.acrostic),
            ("the start text fixes characters", len(lay.fixed) > len(cons.acrostic)),
            ("a rhyming line keeps its last for the rhyme", lay.rhyming != frozenset()),
        ]
        for i in wanted:
            word, ids = cons.keywords[i], self.ids[i]
            if len(ids) > length and lay.short:
                return (
                    f"the keyword {word!r} has {len(ids)} characters, but {{max_len}} "
                    f"{lay.max_len} leaves room for lines of {length}"
                ), True
            if len(ids) > length:
                return (
                    f"the keyword {word!r} has {len(ids)} characters, more than a line of "
                    f"{shape} ({length})"
                ), False
            if not any(
                lay.fits(ids, v, c, length, False) for v in range(verses) for c in range(length)
            ):
                why = " and ".join(reason for reason, on in fixes if on)
                binds = lay.short or lay.verses is None
                return f"the keyword {word!r} fits no line of {shape}{why and ': '}{why}", binds
        if lay.verses is None:
            return f"the keywords do not fit {shape} of at most {lay.max_len} characters", True
        places = sum(
            (v, c) not in lay.fixed and not (c == length - 1 and lay.rhymes(v))
            for v in range(verses)
            for c in range(length)
        )
        chars = sum(len(self.ids[i]) for i in wanted)
        if chars > places:
            return (
                f"the keywords have {chars} characters, more than the {places} places {shape} "
                "leaves free (its rhymes kept for the rhyme)"
            ), False
        alone = [i for i in wanted if 2 * len(self.ids[i]) > length - (cons.acrostic != "")]
        if len(alone) > verses:
            return f"{len(alone)} keywords need a line each, but {shape} has {verses}", False
        words = "、".join(cons.keywords[i] for i in wanted)
        return f"the keywords {words} do not all fit {shape} together", False
