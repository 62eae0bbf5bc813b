"""Keyword coverage at every step (see :mod:`poetry_lm.prosody.keywords`): which keywords each
poem of a batch has written, and what its next token must or may be so that the others still
fit. :class:`~poetry_lm.prosody.forms.Rules` calls it, handing it the batch's
:class:`~poetry_lm.prosody.state.PoemShape` once and its
:class:`~poetry_lm.prosody.state.PoemState` at each call."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from poetry_lm.prosody.keyword_plan import Layout, Planner, Step, layout_of
from poetry_lm.prosody.keywords import KeywordError
from poetry_lm.prosody.masks import TokenMasks
from poetry_lm.prosody.state import PoemShape, PoemState
from poetry_lm.text.vocab import CharTable


class Coverage:
    """The keywords of every poem of one batch: which each has written, and its rule for its
    next token (``steps``), so that the others still fit (see the module doc of
    :mod:`poetry_lm.prosody.keywords`).

    Keyword i is ``ids[i]``, its token ids; poem b is row b of the batch, of ``starts[b]``.
    ``state`` is the batch's state before its first token.

    Raises KeywordError at construction where some poem's keywords cannot all fit."""

    def __init__(
        self,
        table: CharTable,
        masks: TokenMasks,
        keywords: tuple[str, ...],
        shape: PoemShape,
        starts: list[list[int]],
        state: PoemState,
    ):
        self.table, self.keywords, self.shape = table, keywords, shape
        self.ids = [tuple(table.encode(k)) for k in keywords]
        self.planner = Planner(self.ids)
        tokens = {t for ids in self.ids for t in ids}
        # a keyword token's rhyme groups (rows of shape.group_fits) and tones ([平, 仄] fits)
        self.groups_of = {
            t: set(shape.group_fits[:, t].nonzero().flatten().tolist()) for t in tokens
        }
        self.ideographs = masks.ideographs  # the Rules' own: built once per vocabulary
        if shape.tones:
            self.tone_of = {t: masks.tone_fits[:, t].tolist() for t in tokens}
        layouts: dict[tuple[int, ...], Layout] = {}
        for start in map(tuple, starts):
            if start not in layouts:
                text = table.decode(list(start))
                covered = frozenset(i for i, k in enumerate(keywords) if k in text)
                lay = layout_of(shape, start, len(layouts), covered)
                lay.order = self.order_that_fits(state, lay)
                layouts[start] = lay
        self.layout = [layouts[tuple(s)] for s in starts]
        self.covered = [set(lay.covered) for lay in self.layout]
        self.progress: list[tuple[int, int] | None] = [None] * len(starts)  # (keyword, written)
        self.in_verse = [0] * len(starts)  # keywords written in the verse being written
        self.steps = [Step() for _ in starts]

    # -- the order of the keywords -----------------------------------------------------------

    def order_that_fits(self, state: PoemState, lay: Layout) -> tuple[int, ...]:
        """The keywords ``lay``'s start text does not hold, in the order given if they fit so,
        else in the first order that does (the plan is greedy: one order may fail where another
        fits). Raises KeywordError, saying why, where none does."""
        wanted = tuple(i for i in range(len(self.ids)) if i not in lay.covered)
        for order in itertools.chain([wanted], itertools.permutations(wanted)):
            if self.first_step(state, lay, order) is not None:
                return order
        why, binds = self.planner.why_not(self.shape, self.keywords, lay, wanted)
        raise KeywordError(why, lay.max_len if binds else None)

    def first_step(self, state: PoemState, lay: Layout, order: tuple[int, ...]) -> Step | None:
        """The rule for a poem's first token, its keywords taken in ``order``; None where they
        do not fit."""
        if not order:
            return Step()
        if lay.length is None:
            return self.planner.first_verse(lay, order, 0, 0)
        may_rhyme = self.may_rhyme(state, 0, order) if lay.rhymes(0) else frozenset()
        plan = self.planner.plan(lay, order, 0, 0, lay.length, 0, may_rhyme)
        return None if plan is None else Step()

    def may_rhyme(self, state: PoemState, b: int, order: tuple[int, ...]) -> frozenset[int]:
        """The keywords whose last token may be the rhyme of poem b's verse: in a rhyme group
        still open to it, not used at a verse's end yet (no 重韵)."""
        lasts = [self.ids[i][-1] for i in order]
        open_ = state.groups.open[b].tolist()
        used = state.rhymes_used[b, lasts].tolist()
        return frozenset(
            i
            for i, last, taken in zip(order, lasts, used)
            if not taken and any(open_[g] for g in self.groups_of[last])
        )

    def tone_fits(
        self, state: PoemState, b: int, ids: tuple[int, ...], verse: int, col: int
    ) -> bool:
        """Whether keyword tokens ``ids`` at (verse, col) fit the 平仄 of a tonal key (平起 or
        仄起) still open to poem b."""
        open_keys = state.keys.open[b].tolist()
        pattern = self.shape.tone_pattern
        tone_rules = [pattern.get((verse, col + j)) for j in range(len(ids))]
        return any(
            open_keys[k]
            and all(
                rule is None or self.tone_of[t][rule[k]] > 0 for t, rule in zip(ids, tone_rules)
            )
            for k in (0, 1)
        )

    # -- each step -------------------------------------------------------------------------

    def decide(self, state: PoemState) -> None:
        """Each poem's rule for its next token (``steps``), from where it stands."""
        done, line, col = state.done.tolist(), state.line.tolist(), state.col.tolist()
        length = state.length.tolist()
        for b, lay in enumerate(self.layout):
            if done[b]:
                self.steps[b] = Step()
            else:
                self.steps[b] = self.step_of(state, b, lay, (line[b], col[b]), length[b])

    def step_of(
        self, state: PoemState, b: int, lay: Layout, at: tuple[int, int], length: int
    ) -> Step:
        """Poem b's rule at ``at`` (verse, col), verses ``length`` long (0: a free poem's first,
        not set yet): a begun keyword's next character, else the rule of
        :meth:`Planner.first_verse` or of :meth:`verse_step`. Raises RuntimeError if no plan fits
        (it always does: each step keeps one)."""
        verse, col = at
        if self.progress[b] is not None:  # a keyword begun: its next token
            i, j = self.progress[b]
            return Step(force=self.ids[i][j], mark_ok=False)
        order = tuple(i for i in lay.order if i not in self.covered[b])
        length = lay.length or length
        # every keyword written, past a fixed count of verses, or at the verse's mark
        if not order or verse >= (lay.verses or verse + 1) or (length and col >= length):
            return Step()
        if not length:
            step = self.planner.first_verse(lay, order, col, self.in_verse[b])
            if step is None:
                raise RuntimeError("the keyword plan was lost in the first verse")  # a bug
            return step
        return self.verse_step(state, b, lay, order, at, length)

    def verse_step(
        self,
        state: PoemState,
        b: int,
        lay: Layout,
        order: tuple[int, ...],
        at: tuple[int, int],
        length: int,
    ) -> Step:
        """Poem b's rule at ``at`` (verse, column) of a verse of known ``length``, keywords
        ``order`` still to write: the plan's first keyword where it is due, else an offer of
        each keyword that may begin here with the others still fitting after it."""
        verse, col = at
        may_rhyme = self.may_rhyme(state, b, order) if lay.rhymes(verse) else frozenset()
        plan = self.planner.plan(lay, order, verse, col, length, self.in_verse[b], may_rhyme)
        if plan is None:
            raise RuntimeError(f"the keyword plan was lost at verse {verse}, column {col}")  # a bug
        first = order[0]
        if plan.places[0][0] == verse and self.due(
            state, b, lay, first, (verse, col, length), plan.places[0][1], may_rhyme
        ):
            return Step(force=self.ids[first][0], offers={self.ids[first][0]: first})
        if self.in_verse[b] and plan.per == 1:  # spread: one keyword to a verse
            return Step()
        step = Step()
        for i, last in zip(order, plan.places):
            ids = self.ids[i]
            if ids[0] in step.offers or not lay.fits(ids, verse, col, length, i in may_rhyme):
                continue
            if self.shape.tones and not self.tone_fits(state, b, ids, verse, col):
                continue
            if self.planner.rest_fit(i, at, lay, order, length, plan, may_rhyme):
                self.planner.offer(step, i, at, last, length)
        return step

    def due(
        self,
        state: PoemState,
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
        if not self.shape.tones:
            return False
        ids = self.ids[i]
        for c in range(last, col - 1, -1):
            if lay.fits(ids, verse, c, length, i in may_rhyme) and self.tone_fits(
                state, b, ids, verse, c
            ):
                return c == col
        return False

    def first_verse_marks(self, state: PoemState, mark_due: torch.Tensor, mark_ok: torch.Tensor):
        """A free poem's marks (B,) at its first verse's end, narrowed to the lengths with which
        its keywords fit (and none while a keyword is being written)."""
        first = (state.length == 0).tolist()
        ruled = [(b, s) for b, s in enumerate(self.steps) if s.mark_ok is not None and first[b]]
        if ruled:
            mark_due, mark_ok = mark_due.clone(), mark_ok.clone()
            for b, step in ruled:
                mark_due[b], mark_ok[b] = step.mark_due, step.mark_ok
        return mark_due, mark_ok

    def hold_end(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, V): a free poem may not end while a keyword is missing (where it has a choice)."""
        eos = self.table.eos
        held = [b for b in range(len(mask)) if self.missing(b) and mask[b].sum() > 1]
        if held:
            mask = mask.clone()
            mask[held, eos] = False
        return mask

    def narrow(self, state: PoemState, mask: torch.Tensor, layers) -> torch.Tensor:
        """(B, V) after the layers → the forced keyword characters alone, where they are due (the
        marks and end the shape allows kept), over any layer but the shape, recorded in the
        poem's backoffs. With no-repeat, the characters of a keyword still to write wait for it.
        Raises RuntimeError if the shape itself forbids a forced character (a bug)."""
        out = None
        done = state.done.tolist() if self.shape.no_repeat else None  # None: no waiting
        for b, step in enumerate(self.steps):
            if step.force is not None:
                out = mask.clone() if out is None else out
                token = step.force
                if not out[b, token]:
                    self.record_override(state, b, token, layers)
                out[b] &= ~self.ideographs
                out[b, token] = True
            elif done is not None and not done[b]:
                waiting = self.waiting(b, step)
                row = mask[b].clone()
                row[waiting] = False
                if waiting and row.any():
                    out = mask.clone() if out is None else out
                    out[b] = row
        return mask if out is None else out

    def record_override(self, state: PoemState, b: int, token: int, layers) -> None:
        """Record in poem b's backoffs the layers that forbid the keyword ``token`` forced
        over them. Raises RuntimeError where none does (the shape does: a bug)."""
        dropped = [name for name, layer in layers if not layer[b, token]]
        if not dropped:  # the plan never puts a keyword where the shape forbids
            raise RuntimeError(f"a keyword's character is out of place in poem {b}")
        state.note(b, f"keyword {self.table.tokens[token]} over {', '.join(dropped)}")

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

    def advance(self, state: PoemState, tokens: list[int], live: list[bool]) -> None:
        """Record the tokens just written (after ``state`` has)."""
        for b, (token, alive) in enumerate(zip(tokens, live)):
            if not alive:
                continue
            if token in self.shape.ends:
                self.in_verse[b] = 0
                continue
            offers = self.steps[b].offers
            if self.progress[b] is not None:
                i, j = self.progress[b]
                self.progress[b] = (i, j + 1) if j + 1 < len(self.ids[i]) else None
            elif token in offers and len(self.ids[offers[token]]) > 1:  # a keyword begun
                self.progress[b] = (offers[token], 1)
            current = state.current[b]
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
