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
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from poetry_lm.prosody.keywords import Coverage, KeywordError, clean_keywords
from poetry_lm.prosody.rhyme import PING, ZE, rhyme_groups, tones_of
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import is_ideograph, to_simplified
from poetry_lm.text.vocab import LOST_CHAR, SPECIALS, CharTable

VERSE_ENDS = "，。？！；"  # a verse (句) ends at one of these
CLOSING = "。？！"  # … and a couplet, or the poem, at one of these
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
    rhyme_first: bool = False  # the first line rhymes too
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
        for asked, field in ((self.tones, "tones"), (self.rhyme_first, "rhyme_first")):
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


def rows_with_any(mask: torch.Tensor) -> np.ndarray:
    """(B, V) bool → (B,) numpy bool: whether each row allows some token. In numpy because
    torch's reduction along a row of bools is slow here: 5 µs for one row of V = 6868 and
    0.3–1.1 ms for 100 rows, against numpy's 2 and 7–15 µs (torch 2.13, one AMD EPYC core)."""
    return mask.numpy().any(1)


class Choice:
    """A choice each poem's own characters settle as it is written (its rhyme group; its tonal
    key is a :class:`ToneKeys`): ``open[b, k]`` says whether option k is still open to poem b."""

    def __init__(self, batch: int, open_options: torch.Tensor):
        self.open = open_options.expand(batch, -1).clone()

    def allows(self, fits: torch.Tensor) -> torch.Tensor:
        """fits (K, V) of 0/1: option k admits character v here → (B, V): characters that fit an
        open option."""
        return (self.open.float() @ fits) > 0

    def settle(self, fits: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor) -> None:
        """Close the options each written token does not fit, in the rows (B,) asked, unless it
        fits none (forced or backed off)."""
        narrowed = self.open & (fits[:, tokens].T > 0)
        keep = narrowed.any(1, keepdim=True) & rows[:, None]
        self.open = torch.where(keep, narrowed, self.open)


# The tonal keys as bits of a code: 1 平起, 2 仄起, 3 both (a poem's start: neither is settled)
PING_QI, ZE_QI, BOTH_KEYS = 1, 2, 3
TONE_RULES = [(0, 0), (1, 1), (0, 1), (1, 0)]  # every rule tone_rule returns
ToneTable = dict[tuple[int, int], np.ndarray]  # an array per tone rule


class ToneKeys:
    """The tonal keys (平起, 仄起) still open to each poem, settled by its tonal characters: a
    :class:`Choice` of two options, kept as a code per poem (B,) (bits: ``PING_QI``, ``ZE_QI``).

    Why not a Choice: a tone rule applies at half of a form's steps, and there the Choice's
    product and a dozen small torch calls made a step ~60 µs slower at batch 1. The code
    indexes masks made once per vocabulary (:func:`tone_tables`): one lookup, and three calls
    to settle, in numpy, whose calls on a few numbers cost a third of torch's (~15 µs in all;
    docs/performance.md, "Generation")."""

    def __init__(self, batch: int, allowed: ToneTable, keys: ToneTable):
        self.code = np.full(batch, BOTH_KEYS)
        self.allowed, self.keys = allowed, keys  # tone_tables()'s, per rule

    @property
    def open(self) -> torch.Tensor:
        """(B, 2) bool: whether 平起, 仄起 are still open to poem b (as ``Choice.open``)."""
        return torch.from_numpy(np.stack([self.code & PING_QI > 0, self.code & ZE_QI > 0], 1))

    def allows(self, rule: tuple[int, int]) -> torch.Tensor:
        """(B, V): the characters that fit the rule under a key still open."""
        return torch.from_numpy(self.allowed[rule][self.code])

    def settle(self, rule: tuple[int, int], tokens: torch.Tensor) -> None:
        """Close the keys each written token (B,) does not fit, unless it fits none (forced or
        backed off). Every poem: a form's poems are all live until the end, which has no rule."""
        narrowed = self.code & self.keys[rule][tokens.numpy()]  # (B,)
        self.code = np.where(narrowed > 0, narrowed, self.code)

    def select(self, index: torch.Tensor) -> None:
        self.code = self.code[index.numpy()]


def tone_tables(tone_fits: torch.Tensor) -> tuple[ToneTable, ToneTable]:
    """The (2, V) 平/仄 fits → per tone rule of :func:`tone_rule`, ``allowed[rule]`` (4, V) bool,
    row c: the characters that fit the rule under a key of code c; and ``keys[rule]`` (V,) int:
    the code of the keys each character fits there (0: none). numpy arrays, for ToneKeys."""
    codes = np.arange(4)[:, None]  # (4, 1): every code of open keys
    allowed, keys = {}, {}
    for rule in TONE_RULES:
        fits = tone_fits[list(rule)].numpy() > 0  # (2, V): fits the rule in 平起, in 仄起
        keys[rule] = fits[0] * PING_QI + fits[1] * ZE_QI
        allowed[rule] = (codes & keys[rule]) > 0
    return allowed, keys


@dataclass(frozen=True)
class TokenMasks:
    """(V,) or (K, V) masks over a vocabulary's tokens, the special tokens set only in ``end``:
    boolean, but the fits are 0/1 floats, ready for ``Choice.allows``'s product (converting 30 × V
    at each rhyme would cost more than the product)."""

    end: torch.Tensor  # the end token alone
    ordinary: torch.Tensor  # every character and mark
    ideographs: torch.Tensor
    verse_ends: torch.Tensor  # ，。？！；
    marks: torch.Tensor  # (2, V): ， and 。
    free_marks: torch.Tensor  # (2, V): a free poem's odd verses' ends (，；), even ones' (。？！)
    tone_fits: torch.Tensor  # (2, V): may be read 平, may be read 仄
    tone_allowed: ToneTable  # per tone rule, (4, V): ``tone_tables``, for ``ToneKeys``
    tone_keys: ToneTable  # per tone rule, (V,)
    group_names: list[str]  # the 平 rhyme groups …
    group_fits: torch.Tensor  # (groups, V): … and their characters
    group_sizes: torch.Tensor  # (groups,)
    any_group_fits: torch.Tensor  # (all 106 groups, V): a free poem may rhyme in any
    any_group_sizes: torch.Tensor  # (all 106 groups,)


@lru_cache(maxsize=4)
def token_masks(table: CharTable) -> TokenMasks:
    """Classify a vocabulary once (a Python pass over V tokens), not at every generate call."""

    # (V,) tokens that pass test; specials and 囗 (a lost character, which older
    # vocabularies list) are never written
    def having(test) -> torch.Tensor:
        never = {*SPECIALS, LOST_CHAR}
        return torch.tensor([tok not in never and test(tok) for tok in table.tokens])

    groups = [g for g in rhyme_groups() if g.tone == PING]
    group_fits = torch.stack([having(lambda tok, g=g: tok in g.chars) for g in groups]).float()
    tone_fits = torch.stack(
        [having(lambda tok: PING in tones_of(tok)), having(lambda tok: ZE in tones_of(tok))]
    ).float()
    any_group_fits = torch.stack(
        [having(lambda tok, g=g: tok in g.chars) for g in rhyme_groups()]
    ).float()
    tone_allowed, tone_keys = tone_tables(tone_fits)
    return TokenMasks(
        end=F.one_hot(torch.tensor(table.eos), len(table)).bool(),
        ordinary=having(lambda tok: True),
        ideographs=having(is_ideograph),
        verse_ends=having(lambda tok: tok in VERSE_ENDS),
        marks=torch.stack([having(lambda tok: tok == "，"), having(lambda tok: tok == "。")]),
        free_marks=torch.stack(
            [having(lambda tok: tok in "，；"), having(lambda tok: tok in CLOSING)]
        ),
        tone_fits=tone_fits,
        tone_allowed=tone_allowed,
        tone_keys=tone_keys,
        group_names=[g.name for g in groups],
        group_fits=group_fits,
        group_sizes=group_fits.sum(1),
        any_group_fits=any_group_fits,
        any_group_sizes=any_group_fits.sum(1),
    )


class Rules:
    """Per-step masks for a batch of poems under one set of constraints.

    ``starts[b]`` (token ids) is forced as the beginning of poem b and must fit its form.
    Without a form, a poem also ends within ``max_len`` tokens (``truncated`` says where that,
    not the model, ended it).
    """

    def __init__(self, table: CharTable, cons: Constraints, starts: list[list[int]], max_len: int):
        B, V = len(starts), len(table)
        self.table, self.cons, self.starts, self.max_len = table, cons, starts, max_len
        self.batch = B  # an int: len() of a tensor costs ~1 µs, at every step
        self.longest_start = max(map(len, starts), default=0)
        self.t = 0  # tokens written by every poem so far
        form = cons.form  # the most tokens a poem takes, its end included:
        self.max_steps = form.lines * (form.chars + 1) + 1 if form else max_len
        self.line = torch.zeros(B, dtype=torch.long)  # per poem: lines finished
        self.col = torch.zeros(B, dtype=torch.long)  # characters in the current line
        # characters per line: the form's, or a free poem's first verse's (0 until it ends)
        self.length = torch.full((B,), form.chars if form else 0, dtype=torch.long)
        self.done = torch.zeros(B, dtype=torch.bool)
        self.truncated = torch.zeros(B, dtype=torch.bool)  # ended by max_len, not by the model
        self.forced = False  # this step allows every poem one token (structure)
        self.backoffs: list[list[str]] = [[] for _ in range(B)]
        self.verses: list[list[tuple[int, ...]]] = [[] for _ in range(B)]  # finished, no marks
        self.current: list[list[int]] = [[] for _ in range(B)]  # the verse being written

        masks = token_masks(table)
        self.eos = masks.end
        self.ideographs = masks.ideographs
        self.heads = F.one_hot(
            torch.tensor([table.index[ch] for ch in cons.acrostic], dtype=torch.long), V
        ).bool()
        if cons.form:  # a form: ideographs, then ，/。 by line
            self.inner, self.ends, self.marks = masks.ideographs, masks.marks.any(0), masks.marks
        else:  # free: ideographs, then ，； or 。？！ by verse
            self.inner, self.ends, self.marks = masks.ideographs, masks.verse_ends, masks.free_marks
        self.used = torch.zeros(B, V, dtype=torch.bool)  # no-repeat: the ideographs each poem wrote
        # no 重韵: the last character of every verse written so far. An unrhymed verse counts
        # too, since a first line that ends in the rhyme group reads as rhymed (首句入韵)
        self.rhymes_used = torch.zeros(B, V, dtype=torch.bool)
        self.rhymed = rhyme_lines(form, cons.rhyme_first) if form else []
        if form:
            self.tone_fits = masks.tone_fits
            self.keys = ToneKeys(B, masks.tone_allowed, masks.tone_keys)
            self.group_names, self.group_fits = masks.group_names, masks.group_fits
            # a group with fewer characters than the poem has rhymes is never chosen
            self.groups = Choice(B, masks.group_sizes >= len(self.rhymed))
        else:  # any group, of either tone, with room for a few rhymes
            self.group_names = [g.name for g in rhyme_groups()]
            self.group_fits = masks.any_group_fits
            self.groups = Choice(B, masks.any_group_sizes >= 4)
        self.rows = torch.arange(B)  # (B,): to index one entry per poem
        # choices the next tokens settle, and in which rows
        self.pending: list[tuple[Choice, torch.Tensor, torch.Tensor]] = []
        self.tone_due: tuple[int, int] | None = None  # the tone rule the next token settles
        self.rhyming: torch.Tensor | None = None  # (B,): the next token is a rhyme (None: none)
        self.verse_end: torch.Tensor | None = None  # (B,): the next token ends a verse
        # the keywords: KeywordError here where they cannot fit
        self.coverage = Coverage(self, starts) if cons.keywords else None

    def place(self) -> tuple[int, int]:
        """(line, column) of the next token, the same for every poem of a form: its lines are
        form.chars characters and a mark, and a start text must fit them."""
        return divmod(self.t, self.cons.form.chars + 1)

    def structure(self) -> torch.Tensor:
        """(B, V): what the poem's shape allows next (line length, closing marks, heads, start
        text, end). Sets ``forced``: True when it allows every poem one token only, which no
        layer can widen."""
        form, heads = self.cons.form, len(self.cons.acrostic)
        if form:  # every poem of a form is at the same place: one row serves all
            line, col = self.place()
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
        if self.t < self.longest_start:  # the start text is written as given
            mask = self.start_text(mask)
        return mask

    def start_text(self, mask: torch.Tensor) -> torch.Tensor:
        """The structure's mask (B, V) with each poem still writing its start text held to its
        next character. Raises ValueError where that character does not fit the shape."""
        form = self.cons.form
        writing = [
            b for b, start in enumerate(self.starts) if self.t < len(start) and not self.done[b]
        ]
        if writing:
            self.forced |= len(writing) == self.batch
            mask = mask.clone()  # never into the shared rows it may view
            for b in writing:
                token = self.starts[b][self.t]
                if not mask[b, token]:
                    shape = form.name if form else "the shape of a free poem"
                    raise ValueError(
                        f"the start text {self.table.decode(self.starts[b])!r} does not fit {shape}"
                    )
                mask[b] = F.one_hot(torch.tensor(token), mask.shape[1]).bool()
        return mask

    def free_structure(self) -> torch.Tensor:
        """(B, V) for free poems: the first verse sets the length, marks alternate, the poem
        ends after a closing mark, and within max_len (at its last complete couplet)."""
        heads = len(self.cons.acrostic)
        line, col, length = self.line, self.col, self.length
        first = length == 0
        mark_due = torch.where(first, col >= self.first_verse_max(), col >= length)
        mark_ok = torch.where(first, col >= FREE_VERSE_MIN, col >= length)
        if self.coverage:  # a first verse ends where the keywords still fit
            mark_due, mark_ok = self.coverage.first_verse_marks(mark_due, mark_ok)
        last_line = (line == heads - 1) if heads else torch.zeros_like(self.done)
        marks = self.marks[((line % 2 == 1) | last_line).long()]  # (B, V): ，； or 。？！
        mask = torch.where(mark_due[:, None], marks, self.inner | (marks & mark_ok[:, None]))
        # after a couplet (or, in an acrostic, its last line): the end is allowed
        closed = (col == 0) & (line > 0) & ((line == heads) if heads else (line % 2 == 0))
        room = self.t + 2 * (length + 1) <= self.max_len  # for one more couplet
        if heads:
            head = self.heads[line.clamp(max=heads - 1)]
            mask = torch.where(((col == 0) & (line < heads))[:, None], head, mask)
            room &= line < heads
        mask = torch.where(
            closed[:, None], torch.where(room[:, None], mask | self.eos, self.eos), mask
        )
        out_of_room = closed & ~room & ~self.done & (line < heads if heads else True)
        self.truncated |= out_of_room
        if self.coverage:  # no end while a keyword is missing
            mask = self.coverage.hold_end(mask)
        mask = torch.where(self.done[:, None], self.eos, mask)
        self.forced = False  # (not known without counting)
        return mask

    def first_verse_min(self) -> int:
        return FREE_VERSE_MIN

    def first_verse_max(self) -> int:
        """The longest first verse of a free poem: one whose couplet (2 × (verse + mark)) fits
        within max_len."""
        return min(FREE_VERSE_MAX, max(FREE_VERSE_MIN, self.max_len // 2 - 1))

    def tone_rule_at(self, line: int, col: int) -> tuple[int, int] | None:
        """A form's :func:`tone_rule` at (line, col)."""
        return tone_rule(self.cons.form, self.rhymed, line, col)

    def layers(self) -> list[tuple[str, torch.Tensor]]:
        """The narrowing constraints at this step, in back-off order: (name, (B, V) mask)."""
        cons, self.pending, layers = self.cons, [], []
        if cons.form:
            line, col = self.place()
            rule = tone_rule(cons.form, self.rhymed, line, col) if line < cons.form.lines else None
            self.tone_due = rule if cons.tones else None
            if self.tone_due:
                layers.append(("tones", self.keys.allows(rule)))
            at_end = col == cons.form.chars - 1 and line < cons.form.lines
            self.verse_end = ~self.done if at_end else None  # every live poem, or none
            at_rhyme = cons.rhyme and line in self.rhymed and at_end
            self.rhyming = ~self.done if at_rhyme else None
        else:  # the last character of a verse, its length known; of an even one, a rhyme
            at_end = (self.col == self.length - 1) & ~self.done
            self.verse_end = at_end if at_end.any() else None
            place = at_end & (self.line % 2 == 1)
            self.rhyming = place if cons.rhyme and place.any() else None
        if self.rhyming is not None:  # no 重韵: a rhyme already written is out
            allowed = self.groups.allows(self.group_fits) & ~self.rhymes_used
            layers.append(("rhyme", allowed | ~self.rhyming[:, None]))
            self.pending.append((self.groups, self.group_fits, self.rhyming))
        if cons.no_repeat:  # nor an acrostic head that a later line is due to begin with
            taken = self.used  # (B, V)
            if cons.acrostic:
                later = torch.arange(len(self.heads))[None, :] > self.line[:, None]
                taken = taken | ((later.float() @ self.heads.float()) > 0)
            layers.append(("no-repeat", ~taken))
        repeats = self.repeated_verse_endings()
        if repeats is not None:
            layers.append(("repeated verse", ~repeats))
        return layers

    def repeated_verse_endings(self) -> torch.Tensor | None:
        """(B, V): at a verse's last character, those that would make it an earlier verse again
        (None where there are none)."""
        if self.cons.form:  # every poem at the same place: only at a line's last character
            rows = range(self.batch) if self.place()[1] == self.cons.form.chars - 1 else ()
        else:
            rows = ((self.col == self.length - 1) & ~self.done).nonzero().flatten().tolist()
        out = None
        for b in rows:
            prefix = tuple(self.current[b])
            for verse in self.verses[b]:
                if verse[:-1] == prefix:
                    out = torch.zeros_like(self.used) if out is None else out
                    out[b, verse[-1]] = True
        return out

    def allowed(self) -> torch.Tensor:
        """(B, V) mask of the tokens each poem may write next: the structure, narrowed by the layers
        that leave it a candidate, and by the keywords."""
        if self.coverage:
            self.coverage.decide()
        shape = self.structure()
        layers = self.layers()
        mask = shape
        for _, layer in layers:
            mask = mask & layer
        if self.coverage:  # a keyword's character where it is due, over the layers
            mask = self.coverage.narrow(mask, layers)
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
                self.backoffs[b].append(
                    f"line {int(self.line[b]) + 1} character {int(self.col[b]) + 1}: "
                    f"no candidate, dropped {name}"
                )
        return mask

    def previous_verse_tokens(self) -> list[int]:
        """Per poem, the token at the next token's place in the previous verse (-1: none)."""
        out = []
        for b, verses in enumerate(self.verses):
            col = len(self.current[b])
            out.append(verses[-1][col] if verses and col < len(verses[-1]) else -1)
        return out

    def advance(self, tokens: torch.Tensor) -> None:
        """Record the tokens (B,) just written (ignored for finished poems)."""
        live = ~self.done
        for choice, fits, rows in self.pending:
            choice.settle(fits, tokens, rows)
        if self.tone_due:
            self.keys.settle(self.tone_due, tokens)
        if self.cons.no_repeat:
            self.used[self.rows, tokens] |= live & self.ideographs[tokens]
        if self.verse_end is not None:
            self.rhymes_used[self.rows, tokens] |= self.verse_end & live
        if self.cons.form:  # a line's mark comes at one place, the same for every poem
            ends = None
            ended = [self.place()[1] == self.cons.form.chars] * self.batch
        else:
            ends = live & self.ends[tokens]
            ended = ends.tolist()
        eos = self.table.eos
        for b, (token, alive, end) in enumerate(zip(tokens.tolist(), live.tolist(), ended)):
            if not alive:
                continue
            if end:
                # Where the verse's length was known, its last character was recorded as it
                # was written (verse_end), so that the mark's own step already sees it. A free
                # poem's first verse ends unannounced: its mark is the first sign. Recording
                # again is harmless, and covers that case without a second rule.
                if self.current[b]:
                    self.rhymes_used[b, self.current[b][-1]] = True
                self.verses[b].append(tuple(self.current[b]))
                self.current[b] = []
            elif token != eos:
                self.current[b].append(token)
        self.t += 1
        if self.cons.form:  # every poem is at the same place, and all end on the last step
            line, col = self.place()
            self.line.fill_(line), self.col.fill_(col)
            self.done.fill_(self.t == self.max_steps)
        else:
            self.length = torch.where(ends & (self.length == 0), self.col, self.length)
            self.line += ends
            self.col = torch.where(ends, 0, self.col + live)
            at_limit = live & (self.t >= self.max_len) & (tokens != self.table.eos)
            self.truncated |= at_limit
            self.done |= live & (tokens == self.table.eos) | at_limit
        if self.coverage:
            self.coverage.advance(tokens.tolist(), live.tolist())

    def select(self, index: torch.Tensor) -> None:
        """Reorder the batch (beam search): poem b becomes the former poem index[b]."""
        for name in ("line", "col", "length", "done", "truncated", "used", "rhymes_used"):
            setattr(self, name, getattr(self, name)[index])
        if self.cons.form:
            self.keys.select(index)
        self.groups.open = self.groups.open[index]
        # this step's per-poem marks, set by allowed() before the beam reorders and read by
        # advance() after it: in a free poem the rows stand at different places
        if self.verse_end is not None:
            self.verse_end = self.verse_end[index]
        if self.rhyming is not None:
            self.rhyming = self.rhyming[index]
        self.pending = [(choice, fits, rows[index]) for choice, fits, rows in self.pending]
        order = index.tolist()
        self.backoffs = [list(self.backoffs[i]) for i in order]
        self.verses = [list(self.verses[i]) for i in order]
        self.current = [list(self.current[i]) for i in order]
        self.starts = [self.starts[i] for i in order]
        if self.coverage:
            self.coverage.select(order)

    def keyword_terms(self, penalty):
        """The repetition penalties (B, V) with a keyword's character where it may be written
        spared, and the bonus (B, V) it gets there (0.0 without keywords): ``Coverage.terms``."""
        return self.coverage.terms(penalty) if self.coverage else (penalty, 0.0)

    def rhyme_of(self, b: int) -> list[str]:
        """The rhyme groups poem b's rhymes all belong to (usually one)."""
        if not self.cons.rhyme or (not self.cons.form and int(self.line[b]) < 2):
            return []
        return [
            name for name, open_ in zip(self.group_names, self.groups.open[b].tolist()) if open_
        ]


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
