"""A batch of poems as the rules and the keyword planner see them: :class:`PoemShape`, what is
fixed before the poems are written, and :class:`PoemState`, where each poem stands and what it
has written that the rules look back on. :class:`~poetry_lm.prosody.forms.Rules` makes both and
advances the state; the keyword planner (:mod:`poetry_lm.prosody.coverage`) only reads them
(and notes in a poem's backoffs where a keyword overrides a rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from poetry_lm.prosody.forms import Form
    from poetry_lm.prosody.masks import Choice, ToneKeys


@dataclass(frozen=True, eq=False)
class PoemShape:
    """What one set of rules fixes for every poem of a batch."""

    form: Form | None  # None: a free poem
    heads: tuple[int, ...]  # the acrostic's head tokens, one a line
    rhyme: bool  # the rhyming verses end in one group
    rhymed: tuple[int, ...]  # a form's rhyming lines (0-based), the 平 ends of its tone rule
    tones: bool  # a form's 平仄 are kept
    # a form's tone_rule at each (line, column) where one applies
    tone_pattern: dict[tuple[int, int], tuple[int, int]]
    no_repeat: bool  # no character twice in a poem
    first_lengths: range  # the lengths a free poem's first verse may take
    max_len: int  # the most tokens a poem takes, its end included
    ends: frozenset[int]  # the tokens that end a verse
    group_fits: torch.Tensor  # (groups, V): the characters of the groups of PoemState.groups


class PoemState:
    """Where each poem of a batch stands (``line``, ``col``, its verses' ``length``, ``done``)
    and what it has written that the rules look back on: its verses, the characters it used and
    ended verses with, the rhyme groups and tonal keys still open to it, and its backoffs."""

    def __init__(self, shape: PoemShape, vocab: int, groups: Choice, keys: ToneKeys | None):
        B, form = len(groups.open), shape.form
        self.form, self.max_steps, self.batch = form, shape.max_len, B
        self.t = 0  # tokens written by every poem so far
        self.line = torch.zeros(B, dtype=torch.long)  # per poem: lines finished
        self.col = torch.zeros(B, dtype=torch.long)  # characters in the current line
        # characters per line: the form's, or a free poem's first verse's (0 until it ends)
        self.length = torch.full((B,), form.chars if form else 0, dtype=torch.long)
        self.done = torch.zeros(B, dtype=torch.bool)
        self.truncated = torch.zeros(B, dtype=torch.bool)  # ended by max_len, not by the model
        self.used = torch.zeros(B, vocab, dtype=torch.bool)  # no-repeat: the ideographs written
        # no 重韵: the last character of every verse written so far. An unrhymed verse counts
        # too, since a first line that ends in the rhyme group reads as rhymed (首句入韵)
        self.rhymes_used = torch.zeros(B, vocab, dtype=torch.bool)
        self.groups, self.keys = groups, keys  # the rhyme groups, tonal keys still open
        self.backoffs: list[list[str]] = [[] for _ in range(B)]
        self.verses: list[list[tuple[int, ...]]] = [[] for _ in range(B)]  # finished, no marks
        self.current: list[list[int]] = [[] for _ in range(B)]  # the verse being written
        self.rows = torch.arange(B)  # (B,): to index one entry per poem

    def place(self) -> tuple[int, int]:
        """(line, column) of the next token, the same for every poem of a form: its lines are
        form.chars characters and a mark, and a start text must fit them."""
        return divmod(self.t, self.form.chars + 1)

    def note(self, b: int, what: str) -> None:
        """Record in poem b's backoffs what a rule gave way to at its next token's place."""
        place = f"line {int(self.line[b]) + 1} character {int(self.col[b]) + 1}"
        self.backoffs[b].append(f"{place}: {what}")

    def previous_verse_tokens(self) -> list[int]:
        """Per poem, the token at the next token's place in the previous verse (-1: none)."""
        out = []
        for b, verses in enumerate(self.verses):
            col = len(self.current[b])
            out.append(verses[-1][col] if verses and col < len(verses[-1]) else -1)
        return out

    def write(self, tokens: torch.Tensor, live: torch.Tensor, ends: torch.Tensor | None, eos: int):
        """Record the tokens (B,) just written by the ``live`` poems (B,) in their verses, and
        move every poem on. ``ends`` (B,): the tokens that end a free poem's verse (None for a
        form, whose marks come at one place)."""
        if self.form:
            ended = [self.place()[1] == self.form.chars] * self.batch
        else:
            ended = ends.tolist()
        for b, (token, alive, end) in enumerate(zip(tokens.tolist(), live.tolist(), ended)):
            if not alive:
                continue
            if end:
                # Where the verse's length was known, its last character was recorded as it
                # was written (``Rules.verse_end``), so that the mark's own step already sees
                # it. A free poem's first verse ends unannounced: its mark is the first sign.
                # Recording again is harmless, and covers that case without a second rule.
                if self.current[b]:
                    self.rhymes_used[b, self.current[b][-1]] = True
                self.verses[b].append(tuple(self.current[b]))
                self.current[b] = []
            elif token != eos:
                self.current[b].append(token)
        self.t += 1
        self.move(tokens, live, ends, eos)

    def move(self, tokens: torch.Tensor, live: torch.Tensor, ends: torch.Tensor | None, eos: int):
        """Each poem's place after its token (``write``'s arguments); a poem that wrote the end,
        or a free one that reached max_len (truncated), is done."""
        if self.form:  # every poem is at the same place, and all end on the last step
            line, col = self.place()
            self.line.fill_(line), self.col.fill_(col)
            self.done.fill_(self.t == self.max_steps)
        else:
            self.length = torch.where(ends & (self.length == 0), self.col, self.length)
            self.line += ends
            self.col = torch.where(ends, 0, self.col + live)
            at_limit = live & (self.t >= self.max_steps) & (tokens != eos)
            self.truncated |= at_limit
            self.done |= live & (tokens == eos) | at_limit

    def select(self, index: torch.Tensor) -> None:
        """Reorder the batch (beam search): poem b becomes the former poem index[b]."""
        for name in ("line", "col", "length", "done", "truncated", "used", "rhymes_used"):
            setattr(self, name, getattr(self, name)[index])
        if self.keys is not None:
            self.keys.select(index)
        self.groups.open = self.groups.open[index]
        order = index.tolist()
        self.backoffs = [list(self.backoffs[i]) for i in order]
        self.verses = [list(self.verses[i]) for i in order]
        self.current = [list(self.current[i]) for i in order]
