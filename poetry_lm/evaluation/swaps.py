"""Poems with one verse from another poem: the negatives the coherence scorer learns from
(:mod:`poetry_lm.evaluation.coherence`).

A negative is a real regulated poem (4 or 8 verses of 5 or 7 characters: 五绝 七绝 五律 七律)
with ONE verse replaced by the verse at the same place (line index) of another real poem of the
same form: same length, same place, the poem's own marks kept. So every verse of a negative is
a poet's, and what tells it from the poem is only whether the verses belong together: what
readers of generated poems miss ("lines from different poems").

**Prosody matched.** Generated poems obey every rule, so a swapped verse that broke the rhyme
would teach the scorer what generation already guarantees. Where it can, the swapped-in verse
has the same tone class (平, 仄 or either, by the 平水韵 table) at the 2nd, 4th, 6th and last
characters as the verse it replaces, and at a rhyming place (even lines) a last character in
one of the same rhyme groups; where no such verse exists, any verse of the place.

**Clashes.** A share of the negatives (``clash``) take a verse that names another season or
time of day than the rest of the poem (spring grass, then chrysanthemums), the second fault
readers name. The markers, a short list and nothing more: :data:`MARKERS`. Two sets of markers
clash when, in one family (season, time of day), both hold some and share none.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from poetry_lm.prosody.masks import VERSE_ENDS
from poetry_lm.prosody.rhyme import groups_of
from poetry_lm.text.corpus import is_ideograph

# family → {marker: its words}; a verse holding one of the words carries the marker
MARKERS: dict[str, dict[str, tuple[str, ...]]] = {
    "season": {
        "春": ("春", "桃花", "杏花", "柳", "莺"),
        "夏": ("夏", "荷", "蝉", "暑"),
        "秋": ("秋", "菊", "雁", "霜", "落叶"),
        "冬": ("冬", "雪", "寒梅", "腊"),
    },
    "time": {
        "晓": ("晓", "晨", "曙", "朝阳"),
        "暮": ("暮", "夕", "夜", "宵"),
    },
}
FORMS = {(4, 5), (4, 7), (8, 5), (8, 7)}  # (verses, characters per verse)
TRIES = 8  # draws for a donor verse before falling back to a looser pool


def verse_parts(text: str) -> list[tuple[str, str]] | None:
    """A regulated poem → its verses as (characters, closing mark), or None for a poem of no
    regulated form (or with anything but ideographs inside a verse)."""
    parts, current = [], ""
    for ch in text:
        if ch in VERSE_ENDS:
            parts.append((current, ch))
            current = ""
        elif is_ideograph(ch):
            current += ch
        else:
            return None
    lengths = {len(chars) for chars, _ in parts}
    if current or len(lengths) != 1 or (len(parts), lengths.pop()) not in FORMS:
        return None
    return parts


def markers(text: str) -> frozenset[tuple[str, str]]:
    """The (family, marker) pairs whose words the text holds: 春风 → {("season", "春")}."""
    return frozenset(
        (family, marker)
        for family, words in MARKERS.items()
        for marker, found in words.items()
        if any(word in text for word in found)
    )


def clashes(verse: frozenset, rest: frozenset) -> bool:
    """Whether a verse's markers clash with the rest of the poem's: in some family both have
    markers and share none."""
    return any(
        {m for f, m in verse if f == family}
        and {m for f, m in rest if f == family}
        and not {m for f, m in verse if f == family} & {m for f, m in rest if f == family}
        for family in MARKERS
    )


def prosody_key(chars: str, line: int) -> tuple:
    """What a swapped-in verse must share with the verse it replaces: the tone class of its
    2nd, 4th, 6th and last characters, and at a rhyming place its last character's groups."""
    places = (1, 3, 5, 6) if len(chars) == 7 else (1, 3, 4)
    tones = tuple(frozenset(g.tone for g in groups_of(chars[i])) for i in places)
    end = frozenset(g.name for g in groups_of(chars[-1])) if line % 2 else None
    return tones, end


@dataclass
class Negative:
    text: str  # the poem with one verse replaced
    line: int  # the verse replaced (0-based)
    clash: bool  # the new verse's season or time clashes with the rest of the poem


class Donors:
    """The verses of a set of real regulated poems, by place, for swapping in."""

    def __init__(self, texts: list[str]):
        self.by_place: dict[tuple, list[str]] = defaultdict(list)  # (verses, chars, line)
        self.by_key: dict[tuple, list[str]] = defaultdict(list)  # place + prosody_key
        self.by_marker: dict[tuple, list[str]] = defaultdict(list)  # place + marker
        self.by_key_marker: dict[tuple, list[str]] = defaultdict(list)
        for text in texts:
            parts = verse_parts(text)
            for line, (chars, _) in enumerate(parts or ()):
                place = (len(parts), len(chars), line)
                key = (*place, prosody_key(chars, line))
                self.by_place[place].append(chars)
                self.by_key[key].append(chars)
                for marker in markers(chars):
                    self.by_marker[(*place, marker)].append(chars)
                    self.by_key_marker[(*key, marker)].append(chars)

    def negative(self, text: str, rng: np.random.Generator, clash: bool) -> Negative | None:
        """``text`` with one verse (drawn by ``rng``) replaced by another poem's at its place,
        prosody matched where possible; with ``clash``, by one whose markers clash with the
        rest of the poem where the poem has markers and such a verse exists. None for a text of
        no regulated form, or where no other verse fits its place."""
        parts = verse_parts(text)
        if parts is None:
            return None
        line = int(rng.integers(len(parts)))
        chars = parts[line][0]
        place = (len(parts), len(chars), line)
        key = (*place, prosody_key(chars, line))
        rest = markers("".join(c for i, (c, _) in enumerate(parts) if i != line))
        donor = self.clashing(key, chars, rest, rng) if clash else None
        clashed = donor is not None
        for pool in (self.by_key[key], self.by_place[place]):
            donor = donor or draw(pool, chars, rng)
        if donor is None:
            return None
        new = [(donor if i == line else c) + mark for i, (c, mark) in enumerate(parts)]
        return Negative("".join(new), line, clashed)

    def clashing(self, key: tuple, chars: str, rest: frozenset, rng) -> str | None:
        """A verse for ``key``'s place whose markers clash with ``rest``, or None."""
        wanted = [
            (family, marker)
            for family, words in MARKERS.items()
            if any(f == family for f, _ in rest)
            for marker in words
            if (family, marker) not in rest
        ]
        if not wanted:
            return None
        for _ in range(TRIES):
            marker = wanted[int(rng.integers(len(wanted)))]
            for pool in (self.by_key_marker[(*key, marker)], self.by_marker[(*key[:3], marker)]):
                donor = draw(pool, chars, rng)
                if donor is not None and clashes(markers(donor), rest):
                    return donor
        return None


def draw(pool: list[str], not_this: str, rng: np.random.Generator) -> str | None:
    """A verse of ``pool`` other than ``not_this``, drawn by ``rng`` (None if there is none
    within TRIES draws)."""
    for _ in range(TRIES if pool else 0):
        verse = pool[int(rng.integers(len(pool)))]
        if verse != not_this:
            return verse
    return None
