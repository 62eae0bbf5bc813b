"""The keyword plan (see :mod:`poetry_lm.prosody.keywords`): where a poem's keywords may go
(its :class:`Layout`), the latest places of those it has still to write (:class:`Planner`), and
why, where they cannot all fit. Pure planning: it reads no poem's state, and
:class:`~poetry_lm.prosody.coverage.Coverage` asks it at every step."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from poetry_lm.prosody.keywords import KEYWORD_BONUS, MAX_KEYWORD_CHARS
from poetry_lm.prosody.state import PoemShape


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


def layout_of(shape: PoemShape, start: tuple[int, ...], index: int, covered: frozenset[int]):
    """The layout of the poems of a start text (token ids) that holds the keywords ``covered``,
    its plan's order not chosen yet."""
    form = shape.form
    fixed = {(v, 0): h for v, h in enumerate(shape.heads)}
    verse = col = 0
    first = None  # the first verse's length, where the start text ends it
    for token in start:
        if token in shape.ends:
            first = col if first is None else first
            verse, col = verse + 1, 0
        else:
            fixed[(verse, col)] = token
            col += 1
    if form:
        lengths = range(form.chars, form.chars + 1)
        rhyming = frozenset(shape.rhymed if shape.rhyme else ())
    else:
        if first is not None:
            lengths = range(first, first + 1)
        else:  # no shorter than the start text's first verse
            lengths = range(max(shape.first_lengths.start, col), shape.first_lengths.stop)
        rhyming = None if shape.rhyme else frozenset()
    return Layout(
        index,
        length=form.chars if form else None,
        verses=form.lines if form else (len(shape.heads) or None),
        fixed=fixed,
        rhyming=rhyming,
        first_lengths=lengths,
        max_len=shape.max_len,
        covered=covered,
        short=not form and first is None and lengths[-1] < MAX_KEYWORD_CHARS,
    )


class Planner:
    """The latest places of a batch's keywords (keyword i is ``ids[i]``, its token ids), cached,
    as a poem asks the same at every column of a verse; the rule in a free poem's first verse,
    which depends on the plans alone; and why the keywords do not fit, where they do not. It
    reads no poem's state: what a poem has settled (its rhyme group, its tonal key) comes in
    as arguments (``may_rhyme``)."""

    def __init__(self, ids: list[tuple[int, ...]]):
        self.ids = ids
        self.plans: dict[tuple, list[tuple[int, int]] | None] = {}  # latest()'s, by its arguments

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

    def offer(
        self, step: Step, i: int, at: tuple[int, int], last: tuple[int, int], length: int
    ) -> None:
        """Offer keyword i at ``at`` (verse, column), its latest place being ``last``: the
        bonus grows as the places left shrink, so that it is placed where the model likes it,
        early only where the model likes it there."""
        token = self.ids[i][0]
        left = max(1, (last[0] - at[0]) * length + last[1] - at[1] + 1)
        step.offers[token], step.bonus[token] = i, KEYWORD_BONUS - math.log(left)

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

    def why_not(
        self, shape: PoemShape, keywords: tuple[str, ...], lay: Layout, wanted: tuple[int, ...]
    ) -> tuple[str, bool]:
        """One sentence on why the keywords ``wanted`` (of ``keywords``) do not fit ``lay``, and
        whether a free poem's ``max_len`` is what binds (its lines or their count: a larger one
        would help)."""
        acrostic = len(shape.heads)
        if shape.form:
            name = f"a {shape.form.name}"
        elif lay.verses:
            name = f"a {lay.verses}-line acrostic"
        else:
            name = "a free poem"
        length = lay.length or lay.first_lengths[-1]
        verses = lay.verses or lay.max_len // (length + 1)
        fixes = [
            ("the acrostic fixes each line's first character", acrostic > 0),
            ("the start text fixes characters", len(lay.fixed) > acrostic),
            ("a rhyming line keeps its last for the rhyme", lay.rhyming != frozenset()),
        ]
        for i in wanted:
            word, ids = keywords[i], self.ids[i]
            if len(ids) > length and lay.short:
                return (
                    f"the keyword {word!r} has {len(ids)} characters, but {{max_len}} "
                    f"{lay.max_len} leaves room for lines of {length}"
                ), True
            if len(ids) > length:
                return (
                    f"the keyword {word!r} has {len(ids)} characters, more than a line of "
                    f"{name} ({length})"
                ), False
            if not any(
                lay.fits(ids, v, c, length, False) for v in range(verses) for c in range(length)
            ):
                why = " and ".join(reason for reason, on in fixes if on)
                binds = lay.short or lay.verses is None
                return f"the keyword {word!r} fits no line of {name}{why and ': '}{why}", binds
        if lay.verses is None:
            return f"the keywords do not fit {name} of at most {lay.max_len} characters", True
        places = sum(
            (v, c) not in lay.fixed and not (c == length - 1 and lay.rhymes(v))
            for v in range(verses)
            for c in range(length)
        )
        chars = sum(len(self.ids[i]) for i in wanted)
        if chars > places:
            return (
                f"the keywords have {chars} characters, more than the {places} places {name} "
                "leaves free (its rhymes kept for the rhyme)"
            ), False
        alone = [i for i in wanted if 2 * len(self.ids[i]) > length - (acrostic > 0)]
        if len(alone) > verses:
            return f"{len(alone)} keywords need a line each, but {name} has {verses}", False
        words = "、".join(keywords[i] for i in wanted)
        return f"the keywords {words} do not all fit {name} together", False
