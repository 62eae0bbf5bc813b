"""Rules a poem must obey, enforced while it is written: at every step, a mask of the characters
each poem of a batch may take next.

Structure (a form's line count and length, its ，/。 marks, acrostic heads, the end) is never
relaxed. Tones, rhyme (its characters all different: no 重韵), no-repeat and no repeated verse
narrow the choice further; where together they leave a poem no candidate, they are dropped for
that step in that order, and the poem records it.

A free poem (no form) takes its shape from its first verse, of 3 to 12 characters: every later
verse has as many, verses end in ，/； and 。/？/! by turns (the last in 。？！ always), and the
poem may end only after a closing mark. With rhyme, its even verses end in one 平水韵 group of
either tone. A free poem that would run past ``max_len`` ends at its last complete couplet and is
marked truncated. The rhyme group and the tonal key (平起/仄起) are not fixed in advance: they start
open and each rhyming or tonal character the model writes closes the options it does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from poetry_lm.prosody.coverage import Coverage
from poetry_lm.prosody.keywords import KeywordError, clean_keywords
from poetry_lm.prosody.masks import (  # noqa: F401 — CLOSING, VERSE_ENDS: read here by others
    CLOSING,
    VERSE_ENDS,
    Choice,
    ToneKeys,
    rows_with_any,
    token_masks,
)
from poetry_lm.prosody.rhyme import rhyme_groups
from poetry_lm.prosody.state import PoemShape, PoemState
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import is_ideograph, to_simplified
from poetry_lm.text.vocab import LOST_CHAR, CharTable

FREE_VERSE_MIN, FREE_VERSE_MAX = 3, 12  # characters in the first verse of a free poem
MAX_LEN_ADVISED = 256  # the longest free poem whose max_len a keyword error works out


@dataclass(frozen=True)
class Form:
    name: str
    lines: int
    chars: int  # characters per line, the closing mark not counted


FORMS = {
    f.name: f
    for f in (Form("五绝", 4, 5), Form("七绝", 4, 7), Form("五律", 8, 5), Form("七律", 8, 7))
}
ALIASES = {"wujue": "五绝", "qijue": "七绝", "wulv": "五律", "qilv": "七律"}


def parse_form(name: str) -> Form:
    """五绝/七绝/五律/七律, in either script, or wujue/qijue/wulv/qilv."""
    key = ALIASES.get(name.lower(), to_simplified(name))
    if key not in FORMS:
        raise ValueError(f"unknown form {name!r}; choose one of {', '.join([*FORMS, *ALIASES])}")
    return FORMS[key]


def rhyme_lines(form: Form, rhyme_first: bool) -> list[int]:
    """0-based lines whose last character rhymes: every second line, and the first if asked."""
    return [i for i in range(form.lines) if i % 2 == 1 or (i == 0 and rhyme_first)]


def tone_rule(form: Form, rhymed: list[int], line: int, col: int) -> tuple[int, int] | None:
    """Tone (0 平, 1 仄) required at 0-based (line, col) for a poem in key 0 (平起: the second
    character of line 1 is 平) and in key 1 (仄起), or None where the tone is free.

    The 2nd, 4th and 6th characters alternate within a line; a couplet's second line is the
    opposite of its first (对) and the next couplet's first line repeats it (粘), so line i's
    key is flipped for i = 1, 2, 5, 6. The last character is 平 on a rhyming line, else 仄.
    """
    if col == form.chars - 1:
        tone = 0 if line in rhymed else 1
        return tone, tone
    if col in (1, 3, 5) and col < form.chars:
        flip = ((line + 1) // 2 + (col == 3)) % 2
        return flip, 1 - flip
    return None


@dataclass(frozen=True)
class Constraints:
    form: Form | None = None
    acrostic: str = ""  # line i begins with acrostic[i]; the line count follows it
    rhyme: bool = False  # rhyming lines end in one 平 rhyme group
    # the first line rhymes too (True), never (False), or as drawn per poem (None: at the rate
    # of real poems of the form, Rules' first_rhymes)
    rhyme_first: bool | None = None
    heard: bool = True  # rhymes and tones as real poems use each character (prosody/heard.py)
    tones: bool = False  # 平仄 at the 2nd, 4th, 6th and last characters
    no_repeat: bool = False  # no character twice in a poem (punctuation aside)
    # each appears in the poem, inside one verse (prosody/keywords.py); a tuple, so that
    # Constraints stay hashable (a list given is kept as one)
    keywords: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "keywords", clean_keywords(self.keywords))
        longest = max(map(len, self.keywords), default=0)
        if self.form and longest > self.form.chars:
            word = max(self.keywords, key=len)
            raise KeywordError(
                f"the keyword {word!r} has {longest} characters, more than a line of a "
                f"{self.form.name} ({self.form.chars})"
            )
        # SettingErrors name the options as {field}s: the CLI and the API each word them
        # rhyme_first either way (None: drawn at the corpus rate) is a form's first line
        asked_first = self.rhyme_first is not None
        for asked, field in ((self.tones, "tones"), (asked_first, "rhyme_first")):
            if asked and self.form is None:
                raise SettingError(f"{{{field}}} needs a form ({{form}})")
        if self.rhyme_first and not self.rhyme:  # its 平 ending alone would rhyme with nothing
            raise SettingError(
                "{rhyme_first} needs {rhyme}: a poem without rhyme has no first rhyme"
            )
        if self.form and self.acrostic and len(self.acrostic) != self.form.lines:
            raise SettingError(
                f"a {self.form.name} has {self.form.lines} lines, so its {{acrostic}} needs "
                f"{self.form.lines} characters, not {len(self.acrostic)}"
            )

    @classmethod
    def from_options(
        cls,
        form: Form | None = None,
        rhyme: bool | None = None,
        tones: bool | None = None,
        **rules,
    ) -> Constraints:
        """The rules as ``generate`` and the API read their options: a rule left unsaid (None)
        takes its default there, rhyme on, and 平仄 (``tones``) on with a form and off without
        one (a free poem has no pattern to keep). The other ``rules`` are Constraints fields.
        Raises what Constraints raises: SettingError for options at odds (tones or rhyme_first
        without a form, rhyme_first without rhyme, an acrostic's length for the form),
        KeywordError (a SettingError too) for keywords that cannot fit."""
        return cls(
            form=form,
            rhyme=True if rhyme is None else rhyme,
            tones=form is not None if tones is None else tones,
            **rules,
        )


class Rules:
    """Per-step masks for a batch of poems under one set of constraints.

    ``starts[b]`` (token ids) is forced as the beginning of poem b and must fit its form.
    Without a form, a poem also ends within ``max_len`` tokens (``truncated`` says where that,
    not the model, ended it). Where each poem stands is its :class:`PoemState` (``state``); the
    keywords are kept by a :class:`Coverage` (``coverage``), which reads that state.
    """

    def __init__(
        self,
        table: CharTable,
        cons: Constraints,
        starts: list[list[int]],
        max_len: int,
        first_rhymes: list[bool] | None = None,
    ):
        B, V, form = len(starts), len(table), cons.form
        self.table, self.cons, self.starts = table, cons, starts
        self.batch = B  # an int: len() of a tensor costs ~1 µs, at every step
        self.longest_start = max(map(len, starts), default=0)
        self.forced = False  # this step allows every poem one token (structure)
        masks = token_masks(table, cons.heard, standard=cons.heard)  # no variant: heard rules
        self.eos, self.ideographs = masks.end, masks.ideographs
        self.heads = F.one_hot(
            torch.tensor([table.index[ch] for ch in cons.acrostic], dtype=torch.long), V
        ).bool()
        if form:  # a form: ideographs, then ，/。 by line
            self.inner, self.ends, self.marks = masks.ideographs, masks.marks.any(0), masks.marks
        else:  # free: ideographs, then ，； or 。？！ by verse
            self.inner, self.ends, self.marks = masks.ideographs, masks.verse_ends, masks.free_marks
        self.rhymed = rhyme_lines(form, cons.rhyme_first is True) if form else []
        # per poem, whether its first line rhymes, where the constraints leave it open
        drawn = form and cons.rhyme and cons.rhyme_first is None and first_rhymes is not None
        self.first_rhymes = torch.tensor(first_rhymes, dtype=torch.bool) if drawn else None
        keys = ToneKeys(B, masks.tone_allowed, masks.tone_keys) if form else None
        if form:
            self.group_names, self.group_fits = masks.group_names, masks.group_fits
            # a group with fewer characters than the poem has rhymes is never chosen
            groups = Choice(B, masks.group_sizes >= len(self.rhymed))
        else:  # any group, of either tone, with room for a few rhymes
            self.group_names = [g.name for g in rhyme_groups()]
            self.group_fits = masks.any_group_fits
            groups = Choice(B, masks.any_group_sizes >= 4)
        self.shape = self.shape_of(max_len)
        self.state = PoemState(self.shape, V, groups, keys)
        # choices the next tokens settle, and in which rows
        self.pending: list[tuple[Choice, torch.Tensor, torch.Tensor]] = []
        self.tone_due: tuple[int, int] | None = None  # the tone rule the next token settles
        self.rhyming: torch.Tensor | None = None  # (B,): the next token is a rhyme (None: none)
        self.verse_end: torch.Tensor | None = None  # (B,): the next token ends a verse
        # the keywords: KeywordError here where they cannot fit
        self.coverage = None
        if cons.keywords:
            self.coverage = Coverage(table, masks, cons.keywords, self.shape, starts, self.state)

    def shape_of(self, max_len: int) -> PoemShape:
        """What these rules fix of every poem, for its state and the keyword planner."""
        cons, form = self.cons, self.cons.form
        cells = (
            [(line, col) for line in range(form.lines) for col in range(form.chars)] if form else []
        )
        rules = {cell: tone_rule(form, self.rhymed, *cell) for cell in cells}
        return PoemShape(
            form=form,
            heads=tuple(self.heads.float().argmax(1).tolist()),
            rhyme=cons.rhyme,
            rhymed=tuple(self.rhymed),
            tones=cons.tones and form is not None,
            tone_pattern={cell: rule for cell, rule in rules.items() if rule is not None},
            no_repeat=cons.no_repeat,
            first_lengths=range(FREE_VERSE_MIN, first_verse_max(max_len) + 1),
            max_len=form.lines * (form.chars + 1) + 1 if form else max_len,
            ends=frozenset(self.ends.nonzero().flatten().tolist()),
            group_fits=self.group_fits,
        )

    # what decoding reads of the batch's state
    max_steps = property(lambda self: self.state.max_steps)  # the most tokens a poem takes
    done = property(lambda self: self.state.done)  # (B,) bool: a poem has ended
    truncated = property(lambda self: self.state.truncated)  # (B,) bool: … ended by max_len
    backoffs = property(lambda self: self.state.backoffs)  # per poem: the rules it dropped

    def previous_verse_tokens(self) -> list[int]:
        """Per poem, the token at the next token's place in the previous verse (-1: none)."""
        return self.state.previous_verse_tokens()

    def structure(self) -> torch.Tensor:
        """(B, V): what the poem's shape allows next (line length, closing marks, heads, start
        text, end). Sets ``forced``: True when it allows every poem one token only, which no
        layer can widen."""
        form, heads = self.cons.form, len(self.cons.acrostic)
        if form:  # every poem of a form is at the same place: one row serves all
            line, col = self.state.place()
            if line >= form.lines:
                row = self.eos
            elif heads and col == 0:
                row = self.heads[line]
            else:
                row = self.marks[line % 2] if col >= form.chars else self.inner
            mask = row.expand(self.batch, -1)  # a view: copied only if a start text writes it
            self.forced = row is not self.inner  # the end, a line's head, its mark: one token each
        else:
            mask = self.free_structure()
        if self.state.t < self.longest_start:  # the start text is written as given
            mask = self.start_text(mask)
        return mask

    def start_text(self, mask: torch.Tensor) -> torch.Tensor:
        """The structure's mask (B, V) with each poem still writing its start text held to its
        next character. Raises ValueError where that character does not fit the shape."""
        form, t, done = self.cons.form, self.state.t, self.state.done
        writing = [b for b, start in enumerate(self.starts) if t < len(start) and not done[b]]
        if writing:
            self.forced |= len(writing) == self.batch
            mask = mask.clone()  # never into the shared rows it may view
            for b in writing:
                token = self.starts[b][t]
                # a variant (劒) the model never writes is still written where a user gave it
                char = self.table.tokens[token]
                written = char != LOST_CHAR and is_ideograph(char)  # a variant included
                given = written and bool((mask[b] & self.ideographs).any())
                if not (mask[b, token] or given):
                    shape = form.name if form else "the shape of a free poem"
                    raise ValueError(
                        f"the start text {self.table.decode(self.starts[b])!r} does not fit {shape}"
                    )
                mask[b] = F.one_hot(torch.tensor(token), mask.shape[1]).bool()
        return mask

    def free_structure(self) -> torch.Tensor:
        """(B, V) for free poems: the first verse sets the length, marks alternate, the poem
        ends after a closing mark, and within max_len (at its last complete couplet)."""
        heads, state = len(self.cons.acrostic), self.state
        line, col, length = state.line, state.col, state.length
        first = length == 0
        mark_due = torch.where(first, col >= self.shape.first_lengths[-1], col >= length)
        mark_ok = torch.where(first, col >= FREE_VERSE_MIN, col >= length)
        if self.coverage:  # a first verse ends where the keywords still fit
            mark_due, mark_ok = self.coverage.first_verse_marks(state, mark_due, mark_ok)
        last_line = (line == heads - 1) if heads else torch.zeros_like(state.done)
        marks = self.marks[((line % 2 == 1) | last_line).long()]  # (B, V): ，； or 。？！
        mask = torch.where(mark_due[:, None], marks, self.inner | (marks & mark_ok[:, None]))
        # after a couplet (or, in an acrostic, its last line): the end is allowed
        closed = (col == 0) & (line > 0) & ((line == heads) if heads else (line % 2 == 0))
        room = state.t + 2 * (length + 1) <= state.max_steps  # for one more couplet
        if heads:
            head = self.heads[line.clamp(max=heads - 1)]
            mask = torch.where(((col == 0) & (line < heads))[:, None], head, mask)
            room &= line < heads
        mask = torch.where(
            closed[:, None], torch.where(room[:, None], mask | self.eos, self.eos), mask
        )
        out_of_room = closed & ~room & ~state.done & (line < heads if heads else True)
        state.truncated |= out_of_room
        if self.coverage:  # no end while a keyword is missing
            mask = self.coverage.hold_end(mask)
        mask = torch.where(state.done[:, None], self.eos, mask)
        self.forced = False  # (not known without counting)
        return mask

    def layers(self) -> list[tuple[str, torch.Tensor]]:
        """The narrowing constraints at this step, in back-off order: (name, (B, V) mask)."""
        cons, state, self.pending, layers = self.cons, self.state, [], []
        if cons.form:
            line, col = state.place()
            rule = self.shape.tone_pattern.get((line, col))
            at_end = col == cons.form.chars - 1 and line < cons.form.lines
            drawn = self.first_rhymes is not None and line == 0 and at_end
            self.tone_due = rule if cons.tones and not drawn else None
            if self.tone_due:
                layers.append(("tones", state.keys.allows(rule)))
            elif drawn and cons.tones:  # 平 where the poem's first line rhymes, else 仄
                ping, ze = state.keys.allows((0, 0)), state.keys.allows((1, 1))
                layers.append(("tones", torch.where(self.first_rhymes[:, None], ping, ze)))
            self.verse_end = ~state.done if at_end else None  # every live poem, or none
            at_rhyme = cons.rhyme and line in self.rhymed and at_end
            self.rhyming = ~state.done if at_rhyme else None
            if drawn:
                self.rhyming = self.first_rhymes & ~state.done
        else:  # the last character of a verse, its length known; of an even one, a rhyme
            at_end = (state.col == state.length - 1) & ~state.done
            self.verse_end = at_end if at_end.any() else None
            place = at_end & (state.line % 2 == 1)
            self.rhyming = place if cons.rhyme and place.any() else None
        if self.rhyming is not None:  # no 重韵: a rhyme already written is out
            allowed = state.groups.allows(self.group_fits) & ~state.rhymes_used
            layers.append(("rhyme", allowed | ~self.rhyming[:, None]))
            self.pending.append((state.groups, self.group_fits, self.rhyming))
        if cons.no_repeat:  # nor an acrostic head that a later line is due to begin with
            taken = state.used  # (B, V)
            if cons.acrostic:
                later = torch.arange(len(self.heads))[None, :] > state.line[:, None]
                taken = taken | ((later.float() @ self.heads.float()) > 0)
            layers.append(("no-repeat", ~taken))
        repeats = self.repeated_verse_endings()
        if repeats is not None:
            layers.append(("repeated verse", ~repeats))
        return layers

    def repeated_verse_endings(self) -> torch.Tensor | None:
        """(B, V): at a verse's last character, those that would make it an earlier verse again
        (None where there are none)."""
        state = self.state
        if self.cons.form:  # every poem at the same place: only at a line's last character
            rows = range(self.batch) if state.place()[1] == self.cons.form.chars - 1 else ()
        else:
            rows = ((state.col == state.length - 1) & ~state.done).nonzero().flatten().tolist()
        out = None
        for b in rows:
            prefix = tuple(state.current[b])
            for verse in state.verses[b]:
                if verse[:-1] == prefix:
                    out = torch.zeros_like(state.used) if out is None else out
                    out[b, verse[-1]] = True
        return out

    def allowed(self) -> torch.Tensor:
        """(B, V) mask of the tokens each poem may write next: the structure, narrowed by the layers
        that leave it a candidate, and by the keywords."""
        if self.coverage:
            self.coverage.decide(self.state)
        shape = self.structure()
        layers = self.layers()
        mask = shape
        for _, layer in layers:
            mask = mask & layer
        if self.coverage:  # a keyword's character where it is due, over the layers
            mask = self.coverage.narrow(self.state, mask, layers)
        return self.back_off(shape, layers, mask)

    def back_off(
        self, shape: torch.Tensor, layers: list[tuple[str, torch.Tensor]], mask: torch.Tensor
    ) -> torch.Tensor:
        """The mask (B, V), with each poem that it leaves no candidate given the structure
        ``shape`` (B, V) narrowed by the later layers only: the layers are dropped in order until
        a candidate is left, and the poem records each dropped."""
        for i, (name, _) in enumerate(layers):
            has_candidate = rows_with_any(mask)  # (B,)
            if has_candidate.all():
                break
            stuck = ~has_candidate
            relaxed = shape
            for _, layer in layers[i + 1 :]:
                relaxed = relaxed & layer
            mask = torch.where(torch.from_numpy(stuck)[:, None], relaxed, mask)
            for b in stuck.nonzero()[0].tolist():
                self.state.note(b, f"no candidate, dropped {name}")
        return mask

    def advance(self, tokens: torch.Tensor) -> None:
        """Record the tokens (B,) just written (ignored for finished poems)."""
        state = self.state
        live = ~state.done
        for choice, fits, rows in self.pending:
            choice.settle(fits, tokens, rows)
        if self.tone_due:
            state.keys.settle(self.tone_due, tokens)
        if self.cons.no_repeat:
            state.used[state.rows, tokens] |= live & self.ideographs[tokens]
        if self.verse_end is not None:
            state.rhymes_used[state.rows, tokens] |= self.verse_end & live
        ends = None if self.cons.form else live & self.ends[tokens]
        state.write(tokens, live, ends, self.table.eos)
        if self.coverage:
            self.coverage.advance(state, tokens.tolist(), live.tolist())

    def select(self, index: torch.Tensor) -> None:
        """Reorder the batch (beam search): poem b becomes the former poem index[b]."""
        self.state.select(index)
        # this step's per-poem marks, set by allowed() before the beam reorders and read by
        # advance() after it: in a free poem the rows stand at different places
        if self.verse_end is not None:
            self.verse_end = self.verse_end[index]
        if self.rhyming is not None:
            self.rhyming = self.rhyming[index]
        if self.first_rhymes is not None:
            self.first_rhymes = self.first_rhymes[index]
        self.pending = [(choice, fits, rows[index]) for choice, fits, rows in self.pending]
        order = index.tolist()
        self.starts = [self.starts[i] for i in order]
        if self.coverage:
            self.coverage.select(order)

    def keyword_terms(self, penalty):
        """The repetition penalties (B, V) with a keyword's character where it may be written
        spared, and the bonus (B, V) it gets there (0.0 without keywords): ``Coverage.terms``."""
        return self.coverage.terms(penalty) if self.coverage else (penalty, 0.0)

    def rhyme_of(self, b: int) -> list[str]:
        """The rhyme groups poem b's rhymes all belong to (usually one)."""
        if not self.cons.rhyme or (not self.cons.form and int(self.state.line[b]) < 2):
            return []
        open_ = self.state.groups.open[b].tolist()
        return [name for name, is_open in zip(self.group_names, open_) if is_open]


def first_verse_max(max_len: int) -> int:
    """The longest first verse of a free poem: one whose couplet (2 × (verse + mark)) fits
    within max_len."""
    return min(FREE_VERSE_MAX, max(FREE_VERSE_MIN, max_len // 2 - 1))


def check_keywords(table: CharTable, cons: Constraints, starts: list[str], max_len: int) -> None:
    """Raise KeywordError (a ValueError, one sentence) where the keywords cannot all fit a poem
    of ``cons`` with one of the start texts, as :func:`generate` would, but before any decoding.
    Where a free poem's ``max_len`` is what binds, the sentence gives the least one that fits
    (below MAX_LEN_ADVISED), found by bisection: a longer poem only adds layouts."""
    if not cons.keywords:
        return
    ids = [table.encode(s) for s in dict.fromkeys(starts or [""])]

    def fits(length: int) -> bool:
        try:
            Rules(table, cons, ids, length)
        except KeywordError:
            return False
        return True

    try:
        Rules(table, cons, ids, max_len)
    except KeywordError as err:
        if err.max_len is None or not fits(MAX_LEN_ADVISED):
            raise
        low, high = max_len, MAX_LEN_ADVISED  # low does not fit, high does
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle, high)
        least = err.reason + f"; give at least {{max_len}} {high}"
        raise KeywordError(least) from None
